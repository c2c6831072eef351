//! The actix-web plumbing that makes every error a DRF-shaped JSON body, in one place:
//! [`ApiError`] (what handlers return), the extractor configs ([`configure_extractors`]), the
//! default 404 and 405 handlers, request-body reading with a size limit, and the JSON/form body
//! parser that reproduces DRF's parser errors.
//!
//! A last safety net lives in [`crate::telemetry::observe`]: any error response that still is not
//! JSON (an actix-internal error, say) is rewritten to `{"detail": ...}` there.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::drf::{Detail, FieldErrors, msg};

/// Largest request body any endpoint accepts (docs/http-contract.md §2: 16 KiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Seconds a client is told to wait when a dependency is down.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// Every way a request can fail, each mapped to one status and one DRF body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `{"<field>": ["..."]}` or `{"non_field_errors": ["..."]}`.
    #[error("invalid input: {0:?}")]
    Validation(FieldErrors),
    /// 400 `{"detail": "..."}`, e.g. `JSON parse error - ...`.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404 `{"detail": "Not found."}`.
    #[error("not found")]
    NotFound,
    /// 405 `{"detail": "方法 “POST” 不被允许。"}`.
    #[error("method {0} not allowed")]
    MethodNotAllowed(String),
    /// 413.
    #[error("request body over {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    /// 415 `{"detail": "不支持请求中的媒体类型 “...”。"}`.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// 429 with `Retry-After`.
    #[error("throttled for {retry_after} s")]
    Throttled { retry_after: u64 },
    /// 503 with `Retry-After`: Redis, MariaDB or the queue is unreachable, or a bounded queue is
    /// full. The cause is logged, never sent.
    #[error("dependency unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 503 with the usual body and this `Retry-After`: a deliberate refusal for a known time
    /// (the global SMS budget is spent), logged by whoever decided it.
    #[error("unavailable for {retry_after} s")]
    UnavailableFor { retry_after: u64 },
    /// 500: a bug. The cause is logged, never sent.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<FieldErrors> for ApiError {
    fn from(e: FieldErrors) -> Self {
        Self::Validation(e)
    }
}

impl ApiError {
    /// A 400 with one `non_field_errors` message.
    pub fn non_field(message: impl Into<String>) -> Self {
        Self::Validation(FieldErrors::non_field(message))
    }

    /// A 400 with one message on one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(FieldErrors::single(field, message))
    }

    /// A 503 caused by `e`.
    pub fn unavailable(e: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable(e.into())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::UnavailableFor { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        let detail = |d: &str| serde_json::to_string(&Detail { detail: d });
        let body = match self {
            Self::Validation(errors) => serde_json::to_string(errors),
            Self::BadRequest(d) => detail(d),
            Self::NotFound => detail(msg::NOT_FOUND),
            Self::MethodNotAllowed(m) => detail(&msg::method_not_allowed(m)),
            Self::PayloadTooLarge => detail(msg::TOO_LARGE),
            Self::UnsupportedMediaType(t) => detail(&msg::unsupported_media_type(t)),
            Self::Throttled { retry_after } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
                detail(msg::THROTTLED)
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = %format!("{cause:#}"), "answering 503: a dependency is unavailable");
                res.insert_header((
                    header::RETRY_AFTER,
                    UNAVAILABLE_RETRY_AFTER_SECS.to_string(),
                ));
                detail(msg::UNAVAILABLE)
            }
            Self::UnavailableFor { retry_after } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
                detail(msg::UNAVAILABLE)
            }
            Self::Unexpected(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "answering 500: unexpected error");
                detail(msg::INTERNAL)
            }
        };
        res.content_type(mime_json())
            .body(body.unwrap_or_else(|_| r#"{"detail":"服务器内部错误"}"#.to_owned()))
    }
}

fn mime_json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

/// Register the extractor error handlers, so a bad path, query or JSON body never produces
/// actix's plain-text errors. Call it from every service's `App::configure`.
pub fn configure_extractors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()))
        .app_data(web::QueryConfig::default().error_handler(|err, _| {
            ApiError::BadRequest(format!("Query parse error - {err}")).into()
        }))
        .app_data(
            web::JsonConfig::default()
                .limit(MAX_BODY_BYTES)
                .error_handler(|err, req| json_error(err, req).into()),
        )
        .app_data(web::PayloadConfig::new(MAX_BODY_BYTES));
}

fn json_error(err: actix_web::error::JsonPayloadError, req: &HttpRequest) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => ApiError::PayloadTooLarge,
        E::ContentType => ApiError::UnsupportedMediaType(content_type(req).to_owned()),
        E::Deserialize(e) | E::Serialize(e) => json_parse_error(&e),
        other => ApiError::BadRequest(format!("JSON parse error - {other}")),
    }
}

/// DRF's text for a body that is not JSON.
pub fn json_parse_error(e: &serde_json::Error) -> ApiError {
    ApiError::BadRequest(format!("JSON parse error - {e}"))
}

fn content_type(req: &HttpRequest) -> &str {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `App::default_service`: every unknown route is `404 {"detail": "Not found."}`.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// The `App` every service starts from: CORS inside the observation middleware (so preflights
/// are logged and counted too), the shared metrics registry and CORS origins as app data, the
/// extractor error handlers, and the JSON 404 for unknown routes. The service adds its own app
/// data and `.configure(routes::configure)`.
pub fn app(
    metrics: web::Data<crate::metrics::Metrics>,
    cors: web::Data<crate::cors::AllowedOrigins>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    use actix_web::middleware::from_fn;
    actix_web::App::new()
        .wrap(from_fn(crate::cors::cors))
        .wrap(from_fn(crate::telemetry::observe))
        .app_data(cors)
        .app_data(metrics)
        .configure(configure_extractors)
        .default_service(web::to(not_found))
}

/// A resource at `path` that serves `route` and answers every other method with DRF's 405, the
/// way every route of every service is registered.
pub fn endpoint(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(method_not_allowed))
}

/// `Resource::default_service`: a known route with the wrong method. `OPTIONS` is refused like
/// any other method; DRF would describe the view, which no meiduo client uses.
pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(req.method().as_str().to_owned()))
}

/// Read the request body, refusing more than [`MAX_BODY_BYTES`] with 413 as soon as the
/// `Content-Length` or the bytes received so far say so (nothing larger is buffered).
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("request body error - {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parse a request body the way DRF's default parsers do: JSON or form-encoded, into an object.
///
/// - JSON that does not parse: 400 `{"detail": "JSON parse error - ..."}`;
/// - JSON that is not an object: 400 `{"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}`;
/// - any other content type: 415; an empty body with no content type is an empty object.
///
/// Form values are strings; a repeated key keeps its last value, as Django's `QueryDict.get` does.
pub fn parse_object(req: &HttpRequest, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let ct = content_type(req);
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => {
            let value: Value = serde_json::from_slice(body).map_err(|e| json_parse_error(&e))?;
            match value {
                Value::Object(map) => Ok(map),
                other => Err(ApiError::non_field(msg::expected_dictionary(
                    json_type_name(&other),
                ))),
            }
        }
        "application/x-www-form-urlencoded" => {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| ApiError::BadRequest(format!("Form parse error - {e}")))?;
            Ok(pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect())
        }
        "" if body.is_empty() => Ok(Map::new()),
        _ => Err(ApiError::UnsupportedMediaType(ct.to_owned())),
    }
}

/// The Python type name DRF puts in "Expected a dictionary, but got {type}."
fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use actix_web::test::TestRequest;

    async fn body_of(e: ApiError) -> (u16, String, Option<String>) {
        let res = e.error_response();
        let status = res.status().as_u16();
        let retry = res
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().expect("ascii").to_owned());
        assert_eq!(res.headers().get(header::CONTENT_TYPE), Some(&mime_json()));
        let bytes = to_bytes(res.into_body()).await.expect("body");
        (
            status,
            String::from_utf8(bytes.to_vec()).expect("utf8"),
            retry,
        )
    }

    #[actix_web::test]
    async fn every_error_has_its_status_and_exact_body() {
        let cases = [
            (
                ApiError::field("mobile", "手机号格式错误"),
                400,
                r#"{"mobile":["手机号格式错误"]}"#,
                None,
            ),
            (ApiError::NotFound, 404, r#"{"detail":"Not found."}"#, None),
            (
                ApiError::MethodNotAllowed("POST".into()),
                405,
                r#"{"detail":"方法 “POST” 不被允许。"}"#,
                None,
            ),
            (
                ApiError::PayloadTooLarge,
                413,
                r#"{"detail":"请求体过大。"}"#,
                None,
            ),
            (
                ApiError::UnsupportedMediaType("text/plain".into()),
                415,
                r#"{"detail":"不支持请求中的媒体类型 “text/plain”。"}"#,
                None,
            ),
            (
                ApiError::Throttled { retry_after: 42 },
                429,
                r#"{"detail":"请求次数过于频繁，请稍后再试"}"#,
                Some("42"),
            ),
            (
                ApiError::unavailable(anyhow::anyhow!("redis down")),
                503,
                r#"{"detail":"服务暂时不可用，请稍后重试"}"#,
                Some("5"),
            ),
            (
                ApiError::UnavailableFor { retry_after: 37 },
                503,
                r#"{"detail":"服务暂时不可用，请稍后重试"}"#,
                Some("37"),
            ),
            (
                ApiError::Unexpected(anyhow::anyhow!("secret cause")),
                500,
                r#"{"detail":"服务器内部错误"}"#,
                None,
            ),
        ];
        for (err, status, body, retry) in cases {
            let (s, b, r) = body_of(err).await;
            assert_eq!((s, b.as_str(), r.as_deref()), (status, body, retry));
        }
    }

    /// An app wired the way every service wires it, with one route per extractor.
    async fn app() -> impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    > {
        use actix_web::{App, middleware::from_fn, test};
        #[derive(serde::Deserialize)]
        struct Q {
            #[expect(dead_code, reason = "only its parsing matters here")]
            n: u32,
        }
        #[derive(serde::Deserialize)]
        struct B {
            #[expect(dead_code, reason = "only its parsing matters here")]
            a: String,
        }
        test::init_service(
            App::new()
                .wrap(from_fn(crate::telemetry::observe))
                .configure(configure_extractors)
                .service(
                    web::resource("/q/")
                        .route(
                            web::get().to(|_: web::Query<Q>| async { HttpResponse::Ok().finish() }),
                        )
                        .default_service(web::to(method_not_allowed)),
                )
                .service(web::resource("/p/{n}/").route(
                    web::get().to(|_: web::Path<u32>| async { HttpResponse::Ok().finish() }),
                ))
                .service(
                    web::resource("/j/").route(
                        web::post().to(|_: web::Json<B>| async { HttpResponse::Ok().finish() }),
                    ),
                )
                .service(web::resource("/body/").route(web::post().to(
                    |req: HttpRequest, payload: web::Payload| async move {
                        let body = read_body(&req, payload).await?;
                        let map = parse_object(&req, &body)?;
                        Ok::<_, ApiError>(HttpResponse::Ok().json(map))
                    },
                )))
                .service(web::resource("/plain/").route(web::get().to(|| async {
                    HttpResponse::BadRequest()
                        .content_type("text/plain")
                        .body("nope")
                })))
                .default_service(web::to(not_found)),
        )
        .await
    }

    async fn call(req: TestRequest) -> (u16, String) {
        let app = app().await;
        let res = actix_web::test::call_service(&app, req.to_request()).await;
        let status = res.status().as_u16();
        let ct = res.headers().get(header::CONTENT_TYPE).cloned();
        let body = actix_web::test::read_body(res).await;
        let body = String::from_utf8(body.to_vec()).expect("utf8");
        if status >= 400 {
            assert_eq!(
                ct.as_ref().and_then(|v| v.to_str().ok()),
                Some("application/json"),
                "{body}"
            );
        }
        (status, body)
    }

    #[actix_web::test]
    async fn every_framework_error_is_drf_json() {
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        let cases: Vec<(&str, TestRequest, u16, String)> = vec![
            ("unknown route", TestRequest::get().uri("/nope/"), 404, r#"{"detail":"Not found."}"#.into()),
            ("path that fails its type", TestRequest::get().uri("/p/abc/"), 404, r#"{"detail":"Not found."}"#.into()),
            ("wrong method", TestRequest::post().uri("/q/"), 405, r#"{"detail":"方法 “POST” 不被允许。"}"#.into()),
            ("wrong method DELETE", TestRequest::delete().uri("/q/"), 405, r#"{"detail":"方法 “DELETE” 不被允许。"}"#.into()),
            ("bad query", TestRequest::get().uri("/q/?n=x"), 400, r#"{"detail":"Query parse error - Query deserialize error: invalid digit found in string"}"#.into()),
            (
                "JSON with the wrong content type",
                TestRequest::post().uri("/j/").insert_header((header::CONTENT_TYPE, "text/plain")).set_payload("{}"),
                415,
                r#"{"detail":"不支持请求中的媒体类型 “text/plain”。"}"#.into(),
            ),
            (
                "JSON that does not parse",
                TestRequest::post().uri("/j/").insert_header((header::CONTENT_TYPE, "application/json")).set_payload("{"),
                400,
                r#"{"detail":"JSON parse error - EOF while parsing an object at line 1 column 1"}"#.into(),
            ),
            (
                "JSON body over 16 KiB",
                TestRequest::post().uri("/j/").insert_header((header::CONTENT_TYPE, "application/json")).set_payload(big.clone()),
                413,
                r#"{"detail":"请求体过大。"}"#.into(),
            ),
            (
                "raw body over 16 KiB",
                TestRequest::post().uri("/body/").insert_header((header::CONTENT_TYPE, "application/json")).set_payload(big),
                413,
                r#"{"detail":"请求体过大。"}"#.into(),
            ),
            (
                "a JSON list",
                TestRequest::post().uri("/body/").insert_header((header::CONTENT_TYPE, "application/json")).set_payload("[1]"),
                400,
                r#"{"non_field_errors":["Invalid data. Expected a dictionary, but got list."]}"#.into(),
            ),
            (
                "an unsupported body type",
                TestRequest::post().uri("/body/").insert_header((header::CONTENT_TYPE, "text/xml")).set_payload("<a/>"),
                415,
                r#"{"detail":"不支持请求中的媒体类型 “text/xml”。"}"#.into(),
            ),
            ("a plain-text error from a handler", TestRequest::get().uri("/plain/"), 400, r#"{"detail":"Bad Request"}"#.into()),
        ];
        for (why, req, status, body) in cases {
            assert_eq!(call(req).await, (status, body), "{why}");
        }
    }

    #[test]
    fn bodies_parse_like_drf() {
        let json = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "application/json; charset=utf-8"))
            .to_http_request();
        let map = parse_object(&json, br#"{"a": "1", "b": true}"#).expect("object");
        assert_eq!(map["b"], Value::Bool(true));

        let err = parse_object(&json, b"[1]").expect_err("list");
        assert!(
            matches!(&err, ApiError::Validation(e) if e.get("non_field_errors") == Some(&["Invalid data. Expected a dictionary, but got list.".to_owned()][..]))
        );
        let err = parse_object(&json, b"{\"a\": ").expect_err("truncated");
        assert!(
            matches!(&err, ApiError::BadRequest(d) if d.starts_with("JSON parse error - EOF while parsing")),
            "{err:?}"
        );
        let deep = "[".repeat(10_000);
        assert!(
            matches!(parse_object(&json, deep.as_bytes()), Err(ApiError::BadRequest(d)) if d.contains("recursion limit"))
        );

        let form = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
            .to_http_request();
        let map = parse_object(&form, b"username=%E7%94%A8&allow=true&allow=false").expect("form");
        assert_eq!(map["username"], Value::String("用".into()));
        assert_eq!(
            map["allow"],
            Value::String("false".into()),
            "last value wins"
        );

        let text = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "text/plain"))
            .to_http_request();
        assert!(
            matches!(parse_object(&text, b"x"), Err(ApiError::UnsupportedMediaType(t)) if t == "text/plain")
        );
        let none = TestRequest::default().to_http_request();
        assert!(parse_object(&none, b"").expect("empty").is_empty());
    }
}
