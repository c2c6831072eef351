//! Building the worker: the queue consumer and the health/metrics HTTP port, run together and
//! stopped together.
//!
//! Stopping (SIGTERM/SIGINT, or the future given to [`Application::run_until`]): the consumer
//! takes no new jobs, finishes those in flight (jobs waiting for a retry go back to the queue),
//! hands prefetched ones back, and deregisters; this is bounded by `SHUTDOWN_TIMEOUT_MS`, after
//! which whatever is left is recovered by another worker as an orphan. The HTTP port answers
//! until the end (`/readyz` says 503 while stopping).

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{HttpServer, web};
use shared::cors::AllowedOrigins;
use tokio::sync::watch;

use crate::breaker::Breaker;
use crate::config::Config;
use crate::consumer::Consumer;
use crate::dead_letter::DeadLetters;
use crate::delivery::{Deliverer, Route};
use crate::markers::SentMarkers;
use crate::metrics::WorkerMetrics;
use crate::provider::{Provider, SmsProvider as _};
use crate::routes::{self, Probes};

/// A bound, not yet running, sms-worker.
pub struct Application {
    port: u16,
    server: Server,
    consumer: Consumer,
    stop_tx: watch::Sender<bool>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("worker", &self.consumer.instance())
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Build the provider client, the Redis connections (lazy: nothing connects yet) and the
    /// consumer, and bind the health/metrics port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let metrics = WorkerMetrics::new();
        let routes = routes(&config, &metrics)?;
        let markers = SentMarkers::new(config.redis.connection()?);
        let queue_conn = config.queue.connection()?;
        let storage = config.queue.storage(queue_conn.clone());
        let apalis_config = config.queue.apalis_config();
        let deliverer = Arc::new(Deliverer::new(
            routes,
            markers.clone(),
            config.retry,
            metrics.clone(),
            stop_rx.clone(),
        ));
        let dead_letters = DeadLetters::new(queue_conn.clone(), &config.queue.name);
        let consumer = Consumer::new(storage, config.consumer.clone(), deliverer, dead_letters);

        let probes = web::Data::new(Probes {
            queue: queue_conn,
            markers,
            stopping: stop_rx,
            active_key: apalis_config.active_jobs_list(),
            scheduled_key: apalis_config.scheduled_jobs_set(),
        });
        let (listener, port) = shared::server::bind(&config.listen)?;
        let server = health_server(listener, config.listen.max_in_flight, metrics, probes)?;
        tracing::info!(
            port,
            worker = consumer.instance(),
            "sms-worker health port listening"
        );
        Ok(Self {
            port,
            server,
            consumer,
            stop_tx,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The health/metrics port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Run until SIGTERM/SIGINT, then stop gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(async {
            let name = shared::shutdown::signal().await;
            tracing::info!(signal = name, "stop requested");
        })
        .await
    }

    /// Run until `stop` completes, then stop gracefully (tests stop the worker this way).
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        let server_handle = self.server.handle();
        let server = tokio::spawn(self.server);
        let mut consumer = tokio::spawn(self.consumer.run(self.stop_tx.subscribe()));

        tokio::select! {
            () = stop => {}
            // The consumer only ends once asked to; if it ever ends early, stop everything.
            _ = &mut consumer => tracing::error!("queue consumer ended unexpectedly"),
        }
        let _ = self.stop_tx.send(true);
        tracing::info!(
            timeout_ms = self.shutdown_timeout.as_millis() as u64,
            "taking no new jobs; waiting for in-flight ones"
        );
        match tokio::time::timeout(self.shutdown_timeout, &mut consumer).await {
            Ok(_) => tracing::info!("in-flight jobs finished"),
            Err(_) => {
                consumer.abort();
                tracing::warn!(
                    "SHUTDOWN_TIMEOUT_MS passed with jobs in flight: they return to the queue \
                     through orphan recovery"
                );
            }
        }
        // Not graceful: the jobs are done, and a scraper's idle keep-alive connection must not
        // hold the exit up.
        server_handle.stop(false).await;
        let _ = server.await;
        Ok(())
    }
}

/// The health and metrics port: one HTTP worker, the probes and `/metrics`.
fn health_server(
    listener: TcpListener,
    max_in_flight: usize,
    metrics: WorkerMetrics,
    probes: web::Data<Probes>,
) -> std::io::Result<Server> {
    let registry = web::Data::new(metrics.registry.clone());
    // Its routes are all probes, never shed; the bound is kept for one service shape.
    let admission = shared::http::Admission::new(max_in_flight, &registry);
    let metrics = web::Data::new(metrics);
    Ok(HttpServer::new(move || {
        // No browser calls the health port: no CORS origins.
        shared::http::app(
            registry.clone(),
            web::Data::new(AllowedOrigins::default()),
            admission.clone(),
        )
        .app_data(metrics.clone())
        .app_data(probes.clone())
        .configure(routes::configure)
    })
    .workers(1)
    // The process stops on its own signal handling (run_until_stopped), after the jobs.
    .disable_signals()
    .listen(listener)?
    .run())
}

/// Each provider of `SMS_PROVIDERS`, in order, with its breaker (and the breaker's gauge).
fn routes(config: &Config, metrics: &WorkerMetrics) -> anyhow::Result<Vec<Route>> {
    config
        .providers
        .iter()
        .map(|settings| {
            let provider = Provider::build(settings)?;
            let gauge = metrics.breaker_state.with_label_values(&[provider.name()]);
            Ok(Route {
                breaker: Breaker::new(config.breaker, gauge),
                provider,
            })
        })
        .collect()
}
