//! `POST /` with a form body: Aliyun's RPC endpoint (`SendSms`, `QuerySendDetails`).

use actix_web::{HttpRequest, HttpResponse};
use chrono::Utc;
use serde_json::{Value, json};

use super::{begin, finish, json_answer, transport_fault};
use crate::aliyun::{self, Action, FLOW_LIMITS, Query, Send};
use crate::{Fault, Message, State, ccp};

/// One Aliyun call: the parameters from the query string and the form body.
pub(super) async fn aliyun_call(state: &State, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    let mut params: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    params.extend(serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default());
    let out_id = params
        .iter()
        .find(|(k, _)| k == "OutId")
        .map(|(_, v)| v.clone());
    let served = begin(state, "aliyun", out_id).await;
    let answer =
        transport_fault(&served.fault).unwrap_or_else(|| answer(state, &served.fault, &params));
    finish(state, served, answer).await
}

fn answer(
    state: &State,
    fault: &Fault,
    params: &[(String, String)],
) -> (HttpResponse, Option<String>) {
    let checked = aliyun::check(&state.config.aliyun, "POST", params, Utc::now(), |nonce| {
        state.lock().nonces.insert(nonce.to_owned())
    });
    match checked {
        Err(r) => {
            tracing::info!(code = r.code, "sandbox rejected an Aliyun request");
            error(r.http_status, r.code, &r.message)
        }
        Ok(_) if fault.status_code.is_some() => {
            let code = fault.status_code.as_deref().unwrap_or_default();
            error(200, code, aliyun::message_for(code))
        }
        Ok(Action::SendSms(send)) => send_sms(state, send),
        Ok(Action::QuerySendDetails(query)) => query_send_details(state, &query),
    }
}

fn error(http_status: u16, code: &str, message: &str) -> (HttpResponse, Option<String>) {
    let body = json!({
        "Code": code,
        "Message": message,
        "RequestId": request_id(),
    });
    let status = actix_web::http::StatusCode::from_u16(http_status)
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    (
        HttpResponse::build(status)
            .content_type("application/json;charset=utf-8")
            .body(body.to_string()),
        Some(code.to_owned()),
    )
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// Aliyun's default flow control, then one message per number. No de-duplication: Aliyun
/// sends a repeated request again.
fn send_sms(state: &State, send: Send) -> (HttpResponse, Option<String>) {
    let now = Utc::now();
    let mut inner = state.lock();
    for to in &send.to {
        for (window, limit, text) in FLOW_LIMITS {
            let recent = inner
                .messages
                .iter()
                .filter(|m| m.provider == "aliyun" && &m.to == to && now - m.received_at < window)
                .count();
            if recent >= limit {
                drop(inner);
                return error(200, "isv.BUSINESS_LIMIT_CONTROL", text);
            }
        }
    }
    for to in &send.to {
        inner.messages.push(Message {
            provider: "aliyun".to_owned(),
            to: to.clone(),
            app_id: state.config.aliyun.access_key_id.clone(),
            template_id: send.template_code.clone(),
            datas: send.datas.clone(),
            req_id: send.out_id.clone(),
            received_at: now,
        });
    }
    let biz_id = format!(
        "{}^0",
        uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000_000
    );
    let body = json!({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id()});
    (json_answer(&body), Some("OK".to_owned()))
}

/// What was sent to one number on one (Shanghai) day, newest first, one page.
fn query_send_details(state: &State, query: &Query) -> (HttpResponse, Option<String>) {
    let inner = state.lock();
    let day: Vec<&Message> = inner
        .messages
        .iter()
        .rev()
        .filter(|m| {
            m.provider == "aliyun"
                && m.to == query.phone_number
                && m.received_at
                    .with_timezone(&ccp::shanghai())
                    .format("%Y%m%d")
                    .to_string()
                    == query.send_date
        })
        .collect();
    let page: Vec<Value> = day
        .iter()
        .skip((query.current_page - 1) * query.page_size)
        .take(query.page_size)
        .map(|m| {
            let at = m
                .received_at
                .with_timezone(&ccp::shanghai())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            json!({
                "PhoneNum": m.to,
                "SendStatus": 3,
                "ErrCode": "DELIVERED",
                "TemplateCode": m.template_id,
                "Content": format!("【{}】验证码{}", state.config.aliyun.sign_name, m.datas.join(",")),
                "SendDate": at,
                "ReceiveDate": at,
                "OutId": m.req_id.clone().unwrap_or_default(),
            })
        })
        .collect();
    let body = json!({
        "Code": "OK",
        "Message": "OK",
        "RequestId": request_id(),
        "TotalCount": day.len(),
        "SmsSendDetailDTOs": {"SmsSendDetailDTO": page},
    });
    (json_answer(&body), Some("OK".to_owned()))
}
