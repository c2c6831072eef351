//! `/healthz` and the `/readyz` answer every service gives.

use actix_web::HttpResponse;
use actix_web::http::header;
use serde_json::{Map, Value};

use super::error::UNAVAILABLE_RETRY_AFTER_SECS;

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// The `/readyz` answer: 200 when every named check passed, else 503 naming the failures.
pub fn readiness(checks: &[(&str, Result<(), String>)]) -> HttpResponse {
    let failed: Map<String, Value> = checks
        .iter()
        .filter_map(|(name, r)| {
            r.as_ref()
                .err()
                .map(|e| ((*name).to_owned(), Value::String(e.clone())))
        })
        .collect();
    if failed.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
    } else {
        tracing::warn!(?failed, "not ready");
        HttpResponse::ServiceUnavailable()
            .insert_header((
                header::RETRY_AFTER,
                UNAVAILABLE_RETRY_AFTER_SECS.to_string(),
            ))
            .json(serde_json::json!({"status": "unavailable", "failed": failed}))
    }
}
