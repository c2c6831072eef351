//! `GET /image_codes/{image_code_id}/`: a PNG captcha, its text stored for 300 s.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use shared::client_ip::ClientIp;
use shared::domain::ImageCodeId;
use shared::drf::msg;
use shared::http::ApiError;

use crate::domain::captcha;
use crate::metrics::VerificationMetrics;
use crate::state::Codes;

/// The id is taken as a raw path segment and parsed here, because a bad one is DRF's 400 field
/// error, not the 404 that a failed path pattern gives elsewhere.
pub async fn image_code(
    req: HttpRequest,
    ClientIp(ip): ClientIp,
    codes: web::Data<Codes>,
    metrics: web::Data<VerificationMetrics>,
) -> Result<HttpResponse, ApiError> {
    let id = ImageCodeId::parse(req.match_info().query("image_code_id"))
        .map_err(|_| ApiError::field("image_code_id", msg::INVALID_UUID))?;
    let client = shared::client_ip::limit_key_of(ip);
    let png = match captcha::issue(&codes.redis, &codes.captcha, &id, &client).await {
        Err(e @ captcha::IssueError::Limited { .. }) => {
            metrics
                .captchas_refused
                .with_label_values(&["issue_limit"])
                .inc();
            return Err(e.into());
        }
        issued => issued?,
    };
    metrics.codes_issued.with_label_values(&["image"]).inc();
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "image/png"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(png))
}
