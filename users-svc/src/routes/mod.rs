//! Every route of users-svc is registered here, and only here.

use actix_web::web;

use actix_web::http::Method;
use shared::http::endpoint;

pub mod health;
pub mod mobile_count;
pub mod register;
pub mod username_count;

/// Register the routes. Each resource answers 405 with DRF's text for methods it does not serve.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint(
        "/usernames/{username}/count/",
        Method::GET,
        username_count::username_count,
    ))
    .service(endpoint(
        "/mobiles/{mobile}/count/",
        Method::GET,
        mobile_count::mobile_count,
    ))
    .service(endpoint("/users/", Method::POST, register::register))
    .service(endpoint("/healthz", Method::GET, shared::http::healthz))
    .service(endpoint("/readyz", Method::GET, health::readyz))
    .service(endpoint("/metrics", Method::GET, shared::metrics::handler));
}
