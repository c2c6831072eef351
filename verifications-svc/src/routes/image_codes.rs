//! `GET /image_codes/{image_code_id}/`: a PNG captcha, its text stored for 300 s.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use shared::client_ip::ClientIp;
use shared::domain::ImageCodeId;
use shared::drf::msg;
use shared::http::ApiError;
use shared::rate_limit::Decision;

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
    // Before any render: a refused client costs one counter, no CPU and no img_ key.
    let key = ip.map_or_else(|| "unknown".to_owned(), shared::client_ip::limit_key);
    match codes
        .captcha_issue_limit
        .hit_on(&mut codes.redis.clone(), &key)
        .await
    {
        Ok(Decision::Allowed) => {}
        Ok(Decision::Refused { retry_after }) => {
            metrics
                .captchas_refused
                .with_label_values(&["issue_limit"])
                .inc();
            return Err(ApiError::Throttled { retry_after });
        }
        Err(e) => return Err(ApiError::unavailable(e)),
    }
    let png = captcha::issue(&codes.redis, &codes.render_limit, &id).await?;
    metrics.codes_issued.with_label_values(&["image"]).inc();
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "image/png"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(png))
}
