//! The health port's routes, all registered here: `/healthz`, `/readyz`, `/metrics`.

mod metrics;
mod ready;

use actix_web::http::Method;
use actix_web::web;
use shared::http::endpoint;

pub use ready::Probes;

/// Register every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/healthz", Method::GET, shared::http::healthz))
        .service(endpoint("/readyz", Method::GET, ready::readyz))
        .service(endpoint("/metrics", Method::GET, metrics::metrics));
}
