//! Building the worker: the health/metrics HTTP port now; the queue consumer joins it.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use shared::http::method_not_allowed;
use shared::metrics::Metrics;

use crate::config::Config;

/// A bound, not yet running, sms-worker.
pub struct Application {
    port: u16,
    server: Server,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Bind the health/metrics port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen.address())
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen.address()))?;
        let port = listener.local_addr()?.port();
        let metrics = web::Data::new(Metrics::new("sms-worker"));
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(shared::telemetry::observe))
                .app_data(metrics.clone())
                .configure(shared::http::configure_extractors)
                .service(
                    web::resource("/healthz")
                        .route(web::get().to(shared::http::healthz))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/metrics")
                        .route(web::get().to(shared::metrics::handler))
                        .default_service(web::to(method_not_allowed)),
                )
                .default_service(web::to(shared::http::not_found))
        })
        .workers(1)
        .listen(listener)?
        .run();
        tracing::info!(port, "sms-worker health port listening");
        Ok(Self { port, server })
    }

    /// The health/metrics port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Run until SIGTERM/SIGINT.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
