//! `POST /` with `X-TC-Action`: Tencent Cloud's API 3.0 endpoint (`SendSms`,
//! `PullSmsSendStatusByPhoneNumber`).

use actix_web::{HttpRequest, HttpResponse};
use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::{begin, finish, json_answer, transport_fault};
use crate::tencent::{self, Action, SAME_CONTENT_SECS, Send};
use crate::{Fault, Message, State};

/// One Tencent call: every header as sent, and the JSON body.
pub(super) async fn tencent_call(state: &State, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let session_context = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("SessionContext")?.as_str().map(str::to_owned));
    let served = begin(state, "tencent", session_context).await;
    let answer = transport_fault(&served.fault).unwrap_or_else(|| {
        let request = tencent::Request {
            headers: &headers,
            body,
        };
        answer(state, &served.fault, request)
    });
    finish(state, served, answer).await
}

fn answer(
    state: &State,
    fault: &Fault,
    request: tencent::Request<'_>,
) -> (HttpResponse, Option<String>) {
    match tencent::check(&state.config.tencent, request, Utc::now()) {
        Err(r) => {
            tracing::info!(code = r.code, "sandbox rejected a Tencent request");
            error(r.code, &r.message)
        }
        Ok(_)
            if fault
                .status_code
                .as_deref()
                .is_some_and(|c| !tencent::is_per_number(c)) =>
        {
            let code = fault.status_code.as_deref().unwrap_or_default();
            error(code, tencent::message_for(code))
        }
        Ok(Action::SendSms(send)) => send_sms(state, fault.status_code.as_deref(), send),
        Ok(Action::PullStatus {
            phone_number,
            since,
        }) => pull_status(state, &phone_number, since),
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn error(code: &str, message: &str) -> (HttpResponse, Option<String>) {
    let body = json!({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id()}});
    (json_answer(&body), Some(code.to_owned()))
}

/// One status per number: an injected per-number code, a bad number, Tencent's 30-second
/// same-content limit, or sent. No de-duplication: a repeated request is sent again (after
/// the 30 seconds).
fn send_sms(state: &State, injected: Option<&str>, send: Send) -> (HttpResponse, Option<String>) {
    let now = Utc::now();
    let mut inner = state.lock();
    let mut statuses = Vec::new();
    for number in &send.phone_numbers {
        let digits = tencent::mainland(number);
        let code = match digits {
            _ if injected.is_some() => injected.unwrap_or_default(),
            None => "InvalidParameterValue.IncorrectPhoneNumber",
            Some(to)
                if inner.messages.iter().any(|m| {
                    m.provider == "tencent"
                        && m.to == to
                        && m.datas == send.datas
                        && now - m.received_at < Duration::seconds(SAME_CONTENT_SECS)
                }) =>
            {
                "LimitExceeded.PhoneNumberThirtySecondLimit"
            }
            Some(to) => {
                inner.messages.push(Message {
                    provider: "tencent".to_owned(),
                    to: to.to_owned(),
                    app_id: state.config.tencent.sdk_app_id.clone(),
                    template_id: send.template_id.clone(),
                    datas: send.datas.clone(),
                    req_id: send.session_context.clone(),
                    received_at: now,
                });
                "Ok"
            }
        };
        let sent = code == "Ok";
        statuses.push(json!({
            "SerialNo": if sent { uuid::Uuid::new_v4().simple().to_string() } else { String::new() },
            "PhoneNumber": number,
            "Fee": u8::from(sent),
            "SessionContext": send.session_context.clone().unwrap_or_default(),
            "Code": code,
            "Message": if sent { "send success" } else { tencent::message_for(code) },
            "IsoCode": if digits.is_some() { "CN" } else { "" },
        }));
    }
    let first = statuses
        .first()
        .and_then(|s| s["Code"].as_str())
        .map(str::to_owned);
    let body = json!({"Response": {"SendStatusSet": statuses, "RequestId": request_id()}});
    (json_answer(&body), first)
}

/// The delivery receipts of one number since `since` (Unix seconds), each with the
/// `SessionContext` of its message. The sandbox reports at once; the real one after the
/// carrier's receipt, seconds to minutes later.
fn pull_status(state: &State, phone_number: &str, since: i64) -> (HttpResponse, Option<String>) {
    let inner = state.lock();
    let digits = tencent::mainland(phone_number).unwrap_or(phone_number);
    let set: Vec<Value> = inner
        .messages
        .iter()
        .filter(|m| m.provider == "tencent" && m.to == digits && m.received_at.timestamp() >= since)
        .map(|m| {
            json!({
                "UserReceiveTime": m.received_at.timestamp(),
                "CountryCode": "86",
                "SubscriberNumber": m.to,
                "PhoneNumber": format!("+86{}", m.to),
                "SessionContext": m.req_id.clone().unwrap_or_default(),
                "ReportStatus": "SUCCESS",
                "Description": "DELIVRD",
            })
        })
        .collect();
    let body = json!({"Response": {"PullSmsSendStatusSet": set, "RequestId": request_id()}});
    (json_answer(&body), Some("Ok".to_owned()))
}
