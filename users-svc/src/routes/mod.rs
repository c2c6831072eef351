//! Every route of users-svc is registered here, and only here.

use actix_web::web;

use shared::http::method_not_allowed;

pub mod health;
pub mod mobile_count;
pub mod register;
pub mod username_count;

/// Register the routes. Each resource answers 405 with DRF's text for methods it does not serve.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/usernames/{username}/count/")
            .route(web::get().to(username_count::username_count))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/mobiles/{mobile}/count/")
            .route(web::get().to(mobile_count::mobile_count))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/users/")
            .route(web::post().to(register::register))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/healthz")
            .route(web::get().to(shared::http::healthz))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(health::readyz))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(shared::metrics::handler))
            .default_service(web::to(method_not_allowed)),
    );
}
