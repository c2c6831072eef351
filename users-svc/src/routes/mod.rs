//! Every route of users-svc is registered here, and only here.

use actix_web::web;

use shared::http::endpoint;

pub mod health;
pub mod mobile_count;
pub mod register;
pub mod username_count;

/// Register the routes. Each resource answers 405 with DRF's text for methods it does not serve.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint(
        "/usernames/{username}/count/",
        web::get().to(username_count::username_count),
    ))
    .service(endpoint(
        "/mobiles/{mobile}/count/",
        web::get().to(mobile_count::mobile_count),
    ))
    .service(endpoint("/users/", web::post().to(register::register)))
    .service(endpoint("/healthz", web::get().to(shared::http::healthz)))
    .service(endpoint("/readyz", web::get().to(health::readyz)))
    .service(endpoint(
        "/metrics",
        web::get().to(shared::metrics::handler),
    ));
}
