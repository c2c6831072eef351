//! Every route of verifications-svc is registered here, and only here.

use actix_web::web;

use shared::http::method_not_allowed;

pub mod health;
pub mod image_codes;
pub mod sms_codes;

/// Register the routes. Each resource answers 405 with DRF's text for methods it does not serve.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/image_codes/{image_code_id}/")
            .route(web::get().to(image_codes::image_code))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        // The original's URL pattern: any other mobile is an unknown route (404), whatever
        // the method.
        web::resource("/sms_codes/{mobile:1[3-9][0-9]{9}}/")
            .route(web::get().to(sms_codes::sms_code))
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
