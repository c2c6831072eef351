//! The worker's Prometheus metrics, on the shared registry (which also carries the HTTP metrics
//! of its health port): jobs by outcome, provider latency, retries and the queue depth.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntGaugeVec, Opts};
use shared::metrics::Metrics;

/// Every metric sms-worker records.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    pub registry: Metrics,
    /// `sms_jobs_total{outcome}`: sent, already_sent, permanent, exhausted, expired, requeued,
    /// unconfirmed.
    pub jobs: prometheus::IntCounterVec,
    /// `sms_provider_jobs_total{provider, outcome}`: finished jobs by the provider that carried
    /// (or last handled) them.
    pub provider_jobs: prometheus::IntCounterVec,
    /// `sms_provider_request_duration_seconds{provider, result}`: one observation per call
    /// (so its `_count` is the attempts): sent, retryable, ambiguous, permanent, and for the
    /// lookups after a lost answer found_sent, found_not_sent, unresolved.
    pub provider_latency: HistogramVec,
    /// `sms_provider_breaker_state{provider}`: 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGaugeVec,
    /// `sms_quota_refunds_total`: daily-quota hits given back because no provider delivered.
    pub quota_refunds: IntCounter,
    /// `sms_retries_total`: provider calls repeated after a retryable failure.
    pub retries: IntCounter,
    /// `sms_verify_redis_waits_total`: waits of a job because the verify-codes Redis could not
    /// be reached (sent marker, attempt counter).
    pub redis_waits: IntCounter,
    /// `sms_queue_depth{state}`: jobs waiting (`active`) and scheduled for later
    /// (`scheduled`), read from Redis when `/metrics` is scraped.
    pub queue_depth: IntGaugeVec,
}

impl WorkerMetrics {
    pub fn new() -> Self {
        let registry = Metrics::new("sms-worker");
        let jobs = registry.counter_vec(
            "sms_jobs_total",
            "SMS jobs finished, by outcome",
            &["outcome"],
        );
        let provider_jobs = registry.counter_vec(
            "sms_provider_jobs_total",
            "SMS jobs finished, by provider and outcome",
            &["provider", "outcome"],
        );
        let provider_latency = HistogramVec::new(
            HistogramOpts::new(
                "sms_provider_request_duration_seconds",
                "Time of one call to the SMS provider",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["provider", "result"],
        )
        .expect("static metric options are valid");
        registry.register(Box::new(provider_latency.clone()));
        let redis_waits = counter(
            &registry,
            "sms_verify_redis_waits_total",
            "Waits of a job because the verify-codes Redis could not be reached",
        );
        let retries = counter(
            &registry,
            "sms_retries_total",
            "Provider calls repeated after a retryable failure",
        );
        let breaker_state = gauge_vec(
            &registry,
            "sms_provider_breaker_state",
            "Circuit breaker of each SMS provider: 0 closed, 1 open, 2 half-open",
            &["provider"],
        );
        let quota_refunds = counter(
            &registry,
            "sms_quota_refunds_total",
            "Daily-quota hits given back because no provider delivered the code",
        );
        let queue_depth = gauge_vec(
            &registry,
            "sms_queue_depth",
            "SMS jobs in the queue, by state",
            &["state"],
        );
        Self {
            registry,
            jobs,
            provider_jobs,
            provider_latency,
            breaker_state,
            quota_refunds,
            retries,
            redis_waits,
            queue_depth,
        }
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Metrics, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("static metric options are valid");
    registry.register(Box::new(c.clone()));
    c
}

fn gauge_vec(registry: &Metrics, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g =
        IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric options are valid");
    registry.register(Box::new(g.clone()));
    g
}
