//! Building the HTTP server: bind first (so a test can ask for port 0 and learn the port),
//! then serve until a shutdown signal.

use actix_web::{HttpServer, web};
use shared::client_ip::TrustedProxies;
use shared::metrics::Metrics;
use shared::server::Bound;

use crate::config::Config;
use crate::domain::captcha::{Issuer, Refusals};
use crate::metrics::VerificationMetrics;
use crate::routes;
use crate::state::Codes;

/// A bound, not yet running, verifications-svc.
#[derive(Debug)]
pub struct Application(Bound);

impl Application {
    /// Bind the listener and assemble the server with its shared clients.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let (listener, port) = shared::server::bind(&config.listen)?;
        let metrics = Metrics::new("verifications-svc");
        let verification_metrics = web::Data::new(VerificationMetrics::register(
            &metrics,
            config.send_limits.budget,
        ));
        let cors = web::Data::new(config.cors_allowed_origins.clone());
        let trusted_proxies = web::Data::new(TrustedProxies(config.trusted_proxies.clone()));
        let admission = shared::http::Admission::new(config.listen.max_in_flight, &metrics);
        let metrics = web::Data::new(metrics);
        // Fail start-up on a URL the Redis client rejects; each worker then opens its own.
        // The refusal memo is the process's; render admission is each worker's own (it draws
        // one picture at a time on its own thread).
        let refusals = Refusals::default();
        let captcha = move |config: &Config| {
            Issuer::for_worker(
                config.captcha_render_wait,
                refusals.clone(),
                config.captcha_issue_limit_per_minute,
            )
        };
        Codes::connect(&config, captcha(&config))?;
        let workers = config.listen.workers;
        let server = HttpServer::new(move || {
            // One multiplexed connection per worker, driven on that worker's own runtime.
            let codes = Codes::connect(&config, captcha(&config))
                .expect("the Redis URLs were checked at start-up");
            shared::http::app(metrics.clone(), cors.clone(), admission.clone())
                .app_data(verification_metrics.clone())
                .app_data(trusted_proxies.clone())
                .app_data(web::Data::new(codes))
                .configure(routes::configure)
        })
        .workers(workers)
        .shutdown_timeout(shared::server::SHUTDOWN_TIMEOUT_SECS)
        .listen(listener)?
        .run();
        Ok(Self(Bound::new("verifications-svc", port, server)))
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.0.port()
    }

    /// Serve until SIGTERM/SIGINT; in-flight requests are finished first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.0.run_until_stopped().await
    }
}
