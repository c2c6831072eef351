//! The sandbox's HTTP surface: the three providers' endpoints (CCP here, Aliyun and Tencent in
//! their own files), the message and call records, the inbox page and the control endpoints.
//! Every route is registered in [`server`].

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, ContentType};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Call, Fault, Message, State, ccp, inbox};

mod aliyun;
mod tencent;

use aliyun::aliyun_call;
use tencent::tencent_call;

/// The providers the sandbox speaks, by the names faults and messages use.
const PROVIDERS: [&str; 3] = ["ccp", "aliyun", "tencent"];

/// Largest request body accepted (a provider request is a few hundred bytes).
const BODY_LIMIT: usize = 64 * 1024;

/// The HTTP server over `state`. `signals`: whether SIGTERM/SIGINT stop it (the binary), or
/// the embedding test controls its life (in-process).
pub(super) fn server(
    state: Arc<State>,
    listener: TcpListener,
    workers: usize,
    signals: bool,
) -> std::io::Result<Server> {
    let data = web::Data::from(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .route(
                "/{version}/Accounts/{sid}/SMS/TemplateSMS",
                web::post().to(template_sms),
            )
            .route("/", web::post().to(provider_root))
            .route("/messages", web::get().to(messages))
            .route("/calls", web::get().to(calls))
            .route("/", web::get().to(inbox_page))
            .route("/control/fail", web::post().to(fail))
            .route("/control/latency", web::post().to(latency))
            .route("/control/reset", web::post().to(reset))
            .route("/control/clear", web::post().to(clear))
            .default_service(web::to(not_found))
    })
    .workers(workers)
    // A hanging call (injected delay) must not hold up a stop for long.
    .shutdown_timeout(1);
    if !signals {
        server = server.disable_signals();
    }
    Ok(server.listen(listener)?.run())
}

/// One provider call being served: where its record is, and the fault it took.
struct Served {
    index: usize,
    received_at: DateTime<Utc>,
    fault: Fault,
}

/// Record the call, take the provider's next fault, and wait out the latency and any delay.
async fn begin(state: &State, provider: &str, req_id: Option<String>) -> Served {
    let received_at = Utc::now();
    let (index, fault, latency) = {
        let mut inner = state.lock();
        inner.calls.push(Call {
            provider: provider.to_owned(),
            received_at,
            req_id,
            http_status: None,
            status_code: None,
        });
        (
            inner.calls.len() - 1,
            inner.next_fault(provider),
            inner.latency,
        )
    };
    let fault = fault.unwrap_or_default();
    let delay = latency + Duration::from_millis(fault.delay_ms.unwrap_or(0));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Served {
        index,
        received_at,
        fault,
    }
}

/// Wait out an accept-then-hang fault, note the answer in the call record, and answer.
async fn finish(
    state: &State,
    served: Served,
    (response, status_code): (HttpResponse, Option<String>),
) -> HttpResponse {
    if let Some(ms) = served.fault.delay_after_accept_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut inner = state.lock();
    // The records may have been reset while this call was waiting.
    if let Some(call) = inner
        .calls
        .get_mut(served.index)
        .filter(|c| c.received_at == served.received_at)
    {
        call.http_status = Some(response.status().as_u16());
        call.status_code = status_code;
    }
    response
}

/// The answer of an HTTP-level fault (an error page or a garbled body), if the fault is one.
fn transport_fault(fault: &Fault) -> Option<(HttpResponse, Option<String>)> {
    if let Some(status) = fault.http_status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let page = format!("<html><body><h1>{status}</h1></body></html>");
        return Some((
            HttpResponse::build(status)
                .content_type(ContentType::html())
                .body(page),
            None,
        ));
    }
    fault.malformed.then(|| {
        (
            HttpResponse::Ok()
                .content_type(ContentType::json())
                .body("<html>upstream error"),
            None,
        )
    })
}

/// `POST /{version}/Accounts/{sid}/SMS/TemplateSMS?sig=`: CCP's send endpoint.
async fn template_sms(
    state: web::Data<State>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let req_id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("reqId")?.as_str().map(str::to_owned));
    let served = begin(&state, "ccp", req_id).await;
    let (version, sid) = path.into_inner();
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok();
    let request = ccp::Request {
        version: &version,
        account_sid: &sid,
        sig: query
            .as_ref()
            .and_then(|q| q.get("sig"))
            .map(String::as_str),
        authorization: req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        body: &body,
    };
    let answer = transport_fault(&served.fault)
        .unwrap_or_else(|| ccp_answer(&state, &served.fault, request));
    finish(&state, served, answer).await
}

/// The CCP answer to one call, and the status code in it.
fn ccp_answer(
    state: &State,
    fault: &Fault,
    request: ccp::Request<'_>,
) -> (HttpResponse, Option<String>) {
    let accepted = match ccp::check(state.config.credentials(), request, Utc::now()) {
        Ok(accepted) => accepted,
        Err(rejection) => {
            tracing::info!(code = rejection.code, "sandbox rejected a CCP request");
            return ccp_error(rejection.code, rejection.msg);
        }
    };
    if let Some(code) = &fault.status_code {
        return ccp_error(code, ccp::message_for(code));
    }

    let now = Utc::now();
    {
        let mut inner = state.lock();
        if let Some(req_id) = &accepted.req_id
            && !inner.req_ids.insert(req_id.clone())
        {
            drop(inner);
            return ccp_error(ccp::DUPLICATE_REQUEST.code, ccp::DUPLICATE_REQUEST.msg);
        }
        for to in &accepted.to {
            inner.messages.push(Message {
                provider: "ccp".to_owned(),
                to: to.clone(),
                app_id: accepted.app_id.clone(),
                template_id: accepted.template_id.clone(),
                datas: accepted.datas.clone(),
                req_id: accepted.req_id.clone(),
                received_at: now,
            });
        }
    }
    let body = json!({
        "statusCode": "000000",
        "templateSMS": {
            "dateCreated": ccp::timestamp(now),
            "smsMessageSid": uuid::Uuid::new_v4().simple().to_string(),
        }
    });
    (json_answer(&body), Some("000000".to_owned()))
}

fn json_answer(body: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json;charset=utf-8")
        .body(body.to_string())
}

fn ccp_error(code: &str, msg: &str) -> (HttpResponse, Option<String>) {
    (
        json_answer(&json!({"statusCode": code, "statusMsg": msg})),
        Some(code.to_owned()),
    )
}

/// `POST /`: Aliyun (a form body) or Tencent (an `X-TC-Action` header), as at the real hosts.
async fn provider_root(
    state: web::Data<State>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if req.headers().contains_key("X-TC-Action") {
        tencent_call(&state, &req, &body).await
    } else {
        aliyun_call(&state, &req, &body).await
    }
}

#[derive(Debug, Deserialize)]
struct MessagesQuery {
    mobile: Option<String>,
}

/// `GET /messages[?mobile=]`: accepted messages, oldest first.
async fn messages(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    let Ok(query) = web::Query::<MessagesQuery>::from_query(req.query_string()) else {
        return HttpResponse::BadRequest().json(json!({"detail": "bad query string"}));
    };
    let inner = state.lock();
    let list: Vec<&Message> = inner
        .messages
        .iter()
        .filter(|m| query.mobile.as_deref().is_none_or(|mobile| m.to == mobile))
        .collect();
    HttpResponse::Ok().json(list)
}

/// `GET /calls`: every call of the provider endpoint.
async fn calls(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(&state.lock().calls)
}

/// `GET /`: the HTML inbox.
async fn inbox_page(state: web::Data<State>) -> HttpResponse {
    let page = inbox::render(&state.lock().messages);
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header(("Cache-Control", "no-store"))
        .body(page)
}

/// `POST /control/fail`: queue a [`Fault`].
async fn fail(state: web::Data<State>, body: web::Bytes) -> HttpResponse {
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return HttpResponse::BadRequest().json(json!({"detail": e.to_string()})),
    };
    if fault
        .http_status
        .is_some_and(|s| StatusCode::from_u16(s).is_err())
    {
        return HttpResponse::BadRequest().json(json!({"detail": "http_status must be 100-999"}));
    }
    if fault
        .provider
        .as_deref()
        .is_some_and(|p| !PROVIDERS.contains(&p))
    {
        return HttpResponse::BadRequest()
            .json(json!({"detail": "provider must be ccp, aliyun or tencent"}));
    }
    // A code names its provider: without one it is CCP's (six digits); Aliyun's and
    // Tencent's are dotted names.
    let fault = fault.normalized();
    let ccp_code = |c: &str| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit());
    if let Some(code) = fault.status_code.as_deref() {
        if fault.provider.as_deref() == Some("ccp") && !ccp_code(code) {
            return HttpResponse::BadRequest()
                .json(json!({"detail": "status_code must be 6 digits"}));
        }
        if code.is_empty() || code.len() > 100 {
            return HttpResponse::BadRequest()
                .json(json!({"detail": "status_code must be 1-100 characters"}));
        }
    }
    let mut inner = state.lock();
    if fault.count > 0 {
        inner.faults.push_back(fault);
    }
    let queued: u32 = inner.faults.iter().map(|f| f.count).sum();
    HttpResponse::Ok().json(json!({"queued": queued}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Latency {
    ms: u64,
}

/// `POST /control/latency {"ms": N}`: every call waits N ms.
async fn latency(state: web::Data<State>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<Latency>(&body) {
        Ok(l) => {
            state.lock().latency = Duration::from_millis(l.ms);
            HttpResponse::Ok().json(json!({"latency_ms": l.ms}))
        }
        Err(e) => HttpResponse::BadRequest().json(json!({"detail": e.to_string()})),
    }
}

/// `POST /control/reset`: forget everything.
async fn reset(state: web::Data<State>) -> HttpResponse {
    *state.lock() = crate::Inner::default();
    HttpResponse::Ok().json(json!({"status": "reset"}))
}

/// `POST /control/clear`: drop the queued faults, keep the records (the end of an outage in
/// the middle of a benchmark, whose messages are still to be counted).
async fn clear(state: web::Data<State>) -> HttpResponse {
    state.lock().faults.clear();
    HttpResponse::Ok().json(json!({"status": "cleared"}))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"detail": "Not found."}))
}
