//! The health port's routes, all registered here: `/healthz`, `/readyz`, `/metrics`.

mod metrics;
mod ready;

use actix_web::web;
use shared::http::method_not_allowed;

pub use ready::Probes;

/// Register every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/healthz")
            .route(web::get().to(shared::http::healthz))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(ready::readyz))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(metrics::metrics))
            .default_service(web::to(method_not_allowed)),
    );
}
