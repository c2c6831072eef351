//! The extractor error handlers, so a bad path, query or JSON body never produces actix's
//! plain-text errors.

use actix_web::{HttpRequest, web};

use super::body::{MAX_BODY_BYTES, content_type};
use super::error::ApiError;

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
