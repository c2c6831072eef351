//! Building the HTTP server: bind first (so a test can ask for port 0 and learn the port),
//! then serve until a shutdown signal.
//!
//! Migrations are not run here but before `build` ([`crate::migrate`], and by `spawn_app` in
//! tests): the service must start without its database.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpServer, web};
use shared::client_ip::TrustedProxies;
use shared::metrics::Metrics;
use shared::redis_client::RedisClient;
use shared::server::Bound;

use crate::config::Config;
use crate::db::{Closing, Db};
use crate::domain::availability::Availability;
use crate::domain::enumeration_limit::EnumerationLimit;
use crate::domain::in_flight::InFlight;
use crate::domain::password::Hasher;
use crate::domain::registration::Registrar;
use crate::domain::token::TokenIssuer;
use crate::metrics::UsersMetrics;
use crate::routes;

/// A bound, not yet running, users-svc.
#[derive(Debug)]
pub struct Application {
    bound: Bound,
    /// The database pools of the HTTP workers, closed when the workers stop.
    closing: Closing,
    /// How long the process waits for those pools to close their connections.
    close_limit: Duration,
}

/// The clients one HTTP worker uses. Each actix worker runs its own single-threaded runtime;
/// giving each its own pools and limiter connection keeps every socket on the runtime of the
/// tasks that use it, so a query's answer never has to wake another thread (measured: about
/// +20% on the count endpoints against one pool shared by all workers).
struct WorkerClients {
    db: Db,
    /// The verify-codes Redis (sms codes and the enumeration limiter): one multiplexed
    /// connection, connected on first use, so the service starts without Redis.
    redis: RedisClient,
}

impl WorkerClients {
    fn build(config: &Config, closing: &Closing) -> anyhow::Result<Self> {
        Ok(Self {
            db: Db::build(&config.database, closing)?,
            redis: config.redis.connection()?,
        })
    }
}

/// One hasher for the whole process: "one hash per core" is a process-wide limit.
fn hasher(config: &Config, metrics: &UsersMetrics) -> Arc<Hasher> {
    Arc::new(Hasher::new(
        config.hashing.bcrypt_cost,
        config.hashing.concurrency,
        config.hashing.max_wait,
        metrics.hash_queue_depth.clone(),
        metrics.hash_in_progress.clone(),
        metrics.hash_seconds.clone(),
    ))
}

impl Application {
    /// Bind the listener and assemble the server. No client connects here, so the service
    /// starts (and answers 503 until they are reachable) without MariaDB or Redis.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let (listener, port) = shared::server::bind(&config.listen)?;
        let closing = Closing::default();
        let close_limit = config.database.timeout;
        // Built once here so that a bad setting fails start-up, not a worker.
        drop(WorkerClients::build(&config, &closing)?);
        let metrics = Metrics::new("users-svc");
        let users_metrics = UsersMetrics::register(&metrics);
        let hasher = hasher(&config, &users_metrics);
        let in_flight = Arc::new(InFlight::default());
        let tokens = TokenIssuer::new(config.jwt.secret.clone(), config.jwt.expiration);
        let outcomes = users_metrics.registrations;
        let admission = shared::http::Admission::new(config.listen.max_in_flight, &metrics);
        let metrics = web::Data::new(metrics);
        let cors = web::Data::new(config.cors_allowed_origins.clone());
        let trusted_proxies = web::Data::new(TrustedProxies(config.trusted_proxies.clone()));
        let workers = config.listen.workers;
        let worker_closing = closing.clone();
        let server = HttpServer::new(move || {
            let clients = WorkerClients::build(&config, &worker_closing)
                .expect("the same settings built at start-up");
            let limiter =
                EnumerationLimit::new(clients.redis.clone(), config.count_limit_per_minute);
            let registrar = Registrar {
                db: clients.db.clone(),
                redis: clients.redis.clone(),
                hasher: Arc::clone(&hasher),
                tokens: tokens.clone(),
                outcomes: outcomes.clone(),
                limiter: limiter.clone(),
                wrong_codes_per_ip_per_hour: config.wrong_codes_per_ip_per_hour,
                in_flight: Arc::clone(&in_flight),
            };
            let availability = Availability {
                db: clients.db.clone(),
                limiter,
            };
            shared::http::app(metrics.clone(), cors.clone(), admission.clone())
                .app_data(trusted_proxies.clone())
                .app_data(web::Data::new(clients.redis))
                .app_data(web::Data::new(clients.db))
                .app_data(web::Data::new(registrar))
                .app_data(web::Data::new(availability))
                .configure(routes::configure)
        })
        .workers(workers)
        .shutdown_timeout(shared::server::SHUTDOWN_TIMEOUT_SECS)
        .listen(listener)?
        .run();
        Ok(Self {
            bound: Bound::new("users-svc", port, server),
            closing,
            close_limit,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.bound.port()
    }

    /// Serve until SIGTERM/SIGINT; in-flight requests are finished first, then the workers'
    /// database connections are closed (`COM_QUIT`), waiting at most `DB_TIMEOUT_MS` for them:
    /// the server returns when the workers report stopped, before they drop their pools.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.bound.run_until_stopped().await?;
        if !self.closing.wait(self.close_limit).await {
            tracing::warn!(
                limit = ?self.close_limit,
                "database connections not closed in time; exiting anyway"
            );
        }
        Ok(())
    }
}
