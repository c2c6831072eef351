//! `POST /users/`: read the body (JSON or form, at most 16 KiB), hand it to the registration
//! rules, answer 201 with the new account.

use actix_web::{HttpRequest, HttpResponse, web};
use shared::client_ip::ClientIp;
use shared::http::{ApiError, parse_object, read_body};

use crate::domain::registration::Registrar;

/// 201 `{"id", "username", "mobile", "token"}`, or the DRF error of the first failing step;
/// 429 when the client is over the per-IP enumeration limit (see the registration rules).
pub async fn register(
    req: HttpRequest,
    ClientIp(client): ClientIp,
    payload: web::Payload,
    registrar: web::Data<Registrar>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await;
    let fields = body
        .and_then(|b| parse_object(&req, &b))
        .inspect_err(|_| registrar.count("malformed"))?;
    let account = registrar.register(client, &fields).await?;
    Ok(HttpResponse::Created().json(account))
}
