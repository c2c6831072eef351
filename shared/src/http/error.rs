//! [`ApiError`]: every way a request can fail, each mapped to one status and one DRF body.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use super::body::MAX_BODY_BYTES;
use crate::drf::{Detail, FieldErrors, msg};

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

pub(super) fn mime_json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

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
}
