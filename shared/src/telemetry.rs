//! Logging and request observation.
//!
//! [`init`] installs a `tracing` subscriber: human-readable text by default, one JSON object per
//! line with `LOG_FORMAT=json`, filtered by `RUST_LOG` (default `info`).
//!
//! [`observe`] is the one middleware every service wraps its `App` in. For each request it
//! takes the request id from `X-Request-Id` (set by nginx) or makes one, opens a span carrying
//! it, echoes it in the response, logs one line with the outcome, records the HTTP metrics, and
//! rewrites any error response that is not JSON into DRF's `{"detail": ...}` so that no client
//! ever sees an HTML or plain-text error from us.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::drf::{Detail, msg};
use crate::metrics::Metrics;

/// The header nginx sets and we echo.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Install the global subscriber. Safe to call more than once (tests): later calls do nothing.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "logging initialised");
    }
}

/// A client-supplied request id is kept only if it is short printable ASCII, so it cannot
/// forge log lines or blow up log storage; otherwise a fresh UUID is used.
pub fn request_id_from(value: Option<&HeaderValue>) -> String {
    value
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// The `method` label of the HTTP metrics. Clients may send any token as a method and actix
/// passes it through, so the raw name would let anyone add label values (and memory) without
/// end; everything but the standard methods is counted as `other`.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The observation middleware; use with `actix_web::middleware::from_fn(observe)`.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let request_id = request_id_from(req.headers().get(REQUEST_ID));
    let method = req.method().clone();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    // The route is recorded once the router has matched it: asked before, actix matches the
    // path against the patterns a second time (regex-lite); after, it is a lookup by the
    // matched resource's index. So the lines a handler logs carry the request id and method,
    // and the request's own line below carries the route too.
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = tracing::field::Empty
    );
    let started = Instant::now();

    let res = next.call(req).instrument(span.clone()).await?;

    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    span.record("route", route.as_str());
    let status = res.status();
    let elapsed = started.elapsed();
    if let Some(m) = &metrics {
        m.requests
            .with_label_values(&[route.as_str(), method_label(&method), status.as_str()])
            .inc();
        m.latency
            .with_label_values(&[route.as_str()])
            .observe(elapsed.as_secs_f64());
    }
    span.in_scope(|| log_answer(&route, status, elapsed));
    let mut res = drf_json_if_not(res, &method);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    Ok(res)
}

/// One line per answer: server errors at warn level, probes not at all. A 503's cause is logged
/// once where it was decided (the dependency's error, the spent budget, the shedding summary),
/// so its answer line stays at info instead of a second warning for the same request.
fn log_answer(route: &str, status: actix_web::http::StatusCode, elapsed: std::time::Duration) {
    let ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() && status != actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(status = status.as_u16(), ms, "request failed");
    } else if route != "/healthz" && route != "/metrics" && route != "/readyz" {
        tracing::info!(status = status.as_u16(), ms, "request");
    }
}

/// The safety net: an error produced outside our handlers (actix itself) that is not JSON keeps
/// its status (and `Retry-After`) and gets DRF's body for it; anything else passes unchanged.
fn drf_json_if_not<B>(
    res: ServiceResponse<B>,
    method: &actix_web::http::Method,
) -> ServiceResponse<EitherBody<B>> {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res.map_into_left_body();
    }
    let detail = match status.as_u16() {
        404 => msg::NOT_FOUND.to_owned(),
        405 => msg::method_not_allowed(method.as_str()),
        413 => msg::TOO_LARGE.to_owned(),
        s if s >= 500 => msg::INTERNAL.to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("Bad Request")
            .to_owned(),
    };
    let retry_after = res.headers().get(header::RETRY_AFTER).cloned();
    let (req, _) = res.into_parts();
    let mut new = HttpResponse::build(status);
    if let Some(v) = retry_after {
        new.insert_header((header::RETRY_AFTER, v));
    }
    ServiceResponse::new(req, new.json(Detail { detail: &detail })).map_into_right_body()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_kept_only_when_sane() {
        let ok = HeaderValue::from_static("abc-123");
        assert_eq!(request_id_from(Some(&ok)), "abc-123");
        let spaced = HeaderValue::from_static("a b");
        assert_eq!(request_id_from(Some(&spaced)).len(), 36);
        let long = HeaderValue::from_str(&"x".repeat(200)).expect("ascii");
        assert_eq!(request_id_from(Some(&long)).len(), 36);
        assert_eq!(request_id_from(None).len(), 36);
    }

    #[actix_web::test]
    async fn request_ids_are_echoed_or_made_and_requests_are_counted() {
        use actix_web::{App, HttpResponse, middleware::from_fn, test};
        let metrics = web::Data::new(Metrics::new("t"));
        let app = test::init_service(
            App::new()
                .wrap(from_fn(observe))
                .app_data(metrics.clone())
                .route(
                    "/x/",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                ),
        )
        .await;
        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/x/")
                .insert_header((REQUEST_ID, "req-42"))
                .to_request(),
        )
        .await;
        assert_eq!(
            res.headers()
                .get(REQUEST_ID)
                .map(|v| v.to_str().expect("ascii")),
            Some("req-42")
        );
        let res = test::call_service(&app, test::TestRequest::get().uri("/x/").to_request()).await;
        let made = res
            .headers()
            .get(REQUEST_ID)
            .expect("an id is made")
            .to_str()
            .expect("ascii");
        assert!(uuid::Uuid::parse_str(made).is_ok(), "{made}");
        for i in 0..20 {
            let method =
                actix_web::http::Method::from_bytes(format!("FOO{i}").as_bytes()).expect("a token");
            let req = test::TestRequest::default().method(method).uri("/x/");
            test::call_service(&app, req.to_request()).await;
        }
        let text = metrics.render();
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/x/",status="200",service="t"} 2"#
            ),
            "{text}"
        );
        // Made-up methods share one label value instead of adding a series each.
        assert!(
            text.contains(
                r#"http_requests_total{method="other",route="/x/",status="404",service="t"} 20"#
            ),
            "{text}"
        );
        assert!(!text.contains("FOO"), "{text}");
    }
}
