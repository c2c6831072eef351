//! `GET /sms_codes/{mobile}/?image_code_id=&text=`: check the captcha, issue an SMS code and
//! queue its sending. The mobile pattern is part of the route (a bad mobile is a 404).

use actix_web::{HttpRequest, HttpResponse, web};
use shared::domain::Mobile;
use shared::http::ApiError;

use crate::domain::sms::{self, IMAGE_CODE_INVALID, IMAGE_CODE_WRONG, SendError, TOO_FREQUENT};
use crate::metrics::VerificationMetrics;
use crate::startup::Codes;

pub async fn sms_code(
    req: HttpRequest,
    codes: web::Data<Codes>,
    metrics: web::Data<VerificationMetrics>,
) -> Result<HttpResponse, ApiError> {
    let mobile = Mobile::parse(req.match_info().query("mobile")).map_err(|_| ApiError::NotFound)?;
    let request = sms::parse_query(req.query_string()).inspect_err(|_| {
        metrics
            .sends_refused
            .with_label_values(&["invalid_input"])
            .inc();
    })?;
    let ip = shared::client_ip::of(&req, &codes.trusted_proxies);
    if let Err(e) = codes.sms.send(&mobile, &request, ip).await {
        metrics.sends_refused.with_label_values(&[e.reason()]).inc();
        return Err(match e {
            SendError::ImageCodeInvalid => ApiError::non_field(IMAGE_CODE_INVALID),
            SendError::ImageCodeWrong => ApiError::non_field(IMAGE_CODE_WRONG),
            SendError::TooFrequent => ApiError::non_field(TOO_FREQUENT),
            SendError::Limited { retry_after, .. } => ApiError::Throttled { retry_after },
            SendError::Unavailable(e) => ApiError::Unavailable(e),
        });
    }
    metrics.codes_issued.with_label_values(&["sms"]).inc();
    Ok(HttpResponse::Ok().json(serde_json::json!({"message": "OK"})))
}
