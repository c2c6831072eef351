//! The health port's routes, all registered here: `/healthz`, `/readyz`, `/metrics`.

mod metrics;
mod ready;

use actix_web::web;
use shared::http::endpoint;

pub use ready::Probes;

/// Register every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/healthz", web::get().to(shared::http::healthz)))
        .service(endpoint("/readyz", web::get().to(ready::readyz)))
        .service(endpoint("/metrics", web::get().to(metrics::metrics)));
}
