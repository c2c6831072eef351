//! `GET /mobiles/{mobile}/count/`.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use shared::client_ip::ClientIp;
use shared::domain::Mobile;
use shared::http::ApiError;

use crate::domain::availability::Availability;

#[derive(Serialize)]
struct Body<'a> {
    mobile: &'a str,
    count: i64,
}

/// 200 `{"mobile": m, "count": n}`; a mobile outside `^1[3-9]\d{9}$` is 404 like the original's
/// URL pattern; 429 over the per-IP limit.
pub async fn mobile_count(
    ClientIp(client): ClientIp,
    path: web::Path<String>,
    availability: web::Data<Availability>,
) -> Result<HttpResponse, ApiError> {
    let mobile = Mobile::parse(&path).map_err(|_| ApiError::NotFound)?;
    let count = availability.mobile_count(client, &mobile).await?;
    Ok(HttpResponse::Ok().json(Body {
        mobile: mobile.as_str(),
        count,
    }))
}
