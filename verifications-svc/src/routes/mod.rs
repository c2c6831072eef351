//! Every route of verifications-svc is registered here, and only here.

use actix_web::web;

use actix_web::http::Method;
use shared::http::endpoint;

pub mod health;
pub mod image_codes;
pub mod sms_codes;

/// Register the routes. Each resource answers 405 with DRF's text for methods it does not serve.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint(
        "/image_codes/{image_code_id}/",
        Method::GET,
        image_codes::image_code,
    ))
    .service(
        // The original's URL pattern: any other mobile is an unknown route (404), whatever
        // the method.
        endpoint(
            "/sms_codes/{mobile:1[3-9][0-9]{9}}/",
            Method::GET,
            sms_codes::sms_code,
        ),
    )
    .service(endpoint("/healthz", Method::GET, shared::http::healthz))
    .service(endpoint("/readyz", Method::GET, health::readyz))
    .service(endpoint("/metrics", Method::GET, shared::metrics::handler));
}
