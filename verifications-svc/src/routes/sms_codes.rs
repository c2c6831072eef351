//! `GET /sms_codes/{mobile}/?image_code_id=&text=`: check the captcha, issue an SMS code and
//! queue its sending. The mobile pattern is part of the route (a bad mobile is a 404).

use actix_web::{HttpRequest, HttpResponse, web};
use shared::client_ip::ClientIp;
use shared::domain::Mobile;
use shared::http::ApiError;

use crate::domain::sms;
use crate::metrics::VerificationMetrics;
use crate::state::Codes;

pub async fn sms_code(
    req: HttpRequest,
    ClientIp(ip): ClientIp,
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
    let sent = codes
        .sms
        .send(&mobile, &request, ip)
        .await
        .inspect_err(|e| {
            metrics.sends_refused.with_label_values(&[e.reason()]).inc();
        })?;
    metrics.sms_issued(&mobile, sent.budget_used);
    Ok(HttpResponse::Ok().json(serde_json::json!({"message": "OK"})))
}
