//! Building the HTTP server: bind first (so a test can ask for port 0 and learn the port),
//! then serve until a shutdown signal.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use shared::metrics::Metrics;

use crate::config::Config;
use crate::routes;

/// A bound, not yet running, users-svc.
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
    /// Bind the listener and assemble the server with its shared clients.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen.address())
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen.address()))?;
        let port = listener.local_addr()?.port();
        let metrics = web::Data::new(Metrics::new("users-svc"));
        let redis = web::Data::new(shared::redis_pool::build(
            &config.redis_url,
            config.redis_pool_size,
            config.redis_timeout,
        )?);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(shared::telemetry::observe))
                .app_data(metrics.clone())
                .app_data(redis.clone())
                .configure(shared::http::configure_extractors)
                .configure(routes::configure)
                .default_service(web::to(shared::http::not_found))
        })
        .workers(config.listen.workers)
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        tracing::info!(port, "users-svc listening");
        Ok(Self { port, server })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serve until SIGTERM/SIGINT; in-flight requests are finished first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
