//! The service's own Prometheus metrics, registered on the shared registry next to the HTTP ones.

use prometheus::IntCounterVec;
use shared::metrics::Metrics;

/// Codes issued and SMS sends refused.
#[derive(Debug, Clone)]
pub struct VerificationMetrics {
    /// `codes_issued_total{kind="image"|"sms"}`.
    pub codes_issued: IntCounterVec,
    /// `sms_sends_refused_total{reason}`: `invalid_input`, `image_code_invalid`,
    /// `image_code_wrong`, `too_frequent`, `mobile_limit`, `ip_limit`, `unavailable`.
    pub sends_refused: IntCounterVec,
}

impl VerificationMetrics {
    /// Register the counters on `metrics`' registry.
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            codes_issued: metrics.counter_vec(
                "codes_issued_total",
                "Image captchas and SMS codes issued",
                &["kind"],
            ),
            sends_refused: metrics.counter_vec(
                "sms_sends_refused_total",
                "SMS code requests refused, by reason",
                &["reason"],
            ),
        }
    }
}
