//! The worker's Prometheus metrics, on the shared registry (which also carries the HTTP metrics
//! of its health port): jobs by outcome, provider latency, retries and the queue depth.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntGaugeVec, Opts};
use shared::metrics::Metrics;

/// Every metric sms-worker records.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    pub registry: Metrics,
    /// `sms_jobs_total{outcome}`: sent, already_sent, permanent, exhausted, expired, requeued.
    pub jobs: prometheus::IntCounterVec,
    /// `sms_provider_request_duration_seconds{provider, result}`: one observation per call.
    pub provider_latency: HistogramVec,
    /// `sms_retries_total`: provider calls repeated after a retryable failure.
    pub retries: IntCounter,
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
        let retries = IntCounter::new(
            "sms_retries_total",
            "Provider calls repeated after a retryable failure",
        )
        .expect("static metric options are valid");
        registry.register(Box::new(retries.clone()));
        let queue_depth = IntGaugeVec::new(
            Opts::new("sms_queue_depth", "SMS jobs in the queue, by state"),
            &["state"],
        )
        .expect("static metric options are valid");
        registry.register(Box::new(queue_depth.clone()));
        Self {
            registry,
            jobs,
            provider_latency,
            retries,
            queue_depth,
        }
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
