//! The worker's Prometheus metrics, on the shared registry (which also carries the HTTP metrics
//! of its health port): jobs by outcome, provider latency, retries and the queue depth.

use prometheus::{HistogramVec, IntCounter, IntGaugeVec};
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
        Self {
            jobs: registry.counter_vec(
                "sms_jobs_total",
                "SMS jobs finished, by outcome",
                &["outcome"],
            ),
            provider_jobs: registry.counter_vec(
                "sms_provider_jobs_total",
                "SMS jobs finished, by provider and outcome",
                &["provider", "outcome"],
            ),
            provider_latency: registry.histogram_vec(
                "sms_provider_request_duration_seconds",
                "Time of one call to the SMS provider",
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
                &["provider", "result"],
            ),
            redis_waits: registry.counter(
                "sms_verify_redis_waits_total",
                "Waits of a job because the verify-codes Redis could not be reached",
            ),
            retries: registry.counter(
                "sms_retries_total",
                "Provider calls repeated after a retryable failure",
            ),
            breaker_state: registry.gauge_vec(
                "sms_provider_breaker_state",
                "Circuit breaker of each SMS provider: 0 closed, 1 open, 2 half-open",
                &["provider"],
            ),
            quota_refunds: registry.counter(
                "sms_quota_refunds_total",
                "Daily-quota hits given back because no provider delivered the code",
            ),
            queue_depth: registry.gauge_vec(
                "sms_queue_depth",
                "SMS jobs in the queue, by state",
                &["state"],
            ),
            registry,
        }
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
