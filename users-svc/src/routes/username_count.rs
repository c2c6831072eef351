//! `GET /usernames/{username}/count/`.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use shared::client_ip::ClientIp;
use shared::domain::Username;
use shared::http::ApiError;

use crate::domain::availability::Availability;

#[derive(Serialize)]
struct Body<'a> {
    username: &'a str,
    count: i64,
}

/// 200 `{"username": u, "count": n}`; a name outside `^\w{5,20}$` is 404 like the original's
/// URL pattern; 429 over the per-IP limit.
pub async fn username_count(
    ClientIp(client): ClientIp,
    path: web::Path<String>,
    availability: web::Data<Availability>,
) -> Result<HttpResponse, ApiError> {
    let name = Username::parse(&path).map_err(|_| ApiError::NotFound)?;
    let count = availability.username_count(client, &name).await?;
    Ok(HttpResponse::Ok().json(Body {
        username: name.as_str(),
        count,
    }))
}
