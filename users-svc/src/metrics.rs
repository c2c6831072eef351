//! The service's own Prometheus metrics, registered on the shared registry next to the HTTP ones.

use prometheus::{Histogram, IntCounterVec, IntGauge};
use shared::metrics::Metrics;

/// Registrations by outcome and the password hashing queue.
#[derive(Debug, Clone)]
pub struct UsersMetrics {
    /// `users_registrations_total{outcome}`: `created`, `malformed`, and every
    /// [`crate::domain::registration::RegisterError::reason`].
    pub registrations: IntCounterVec,
    /// `users_hash_queue_depth`: registrations waiting for a hashing slot.
    pub hash_queue_depth: IntGauge,
    /// `users_hash_in_progress`: hashes running on the blocking pool.
    pub hash_in_progress: IntGauge,
    /// `users_password_hash_seconds`: one bcrypt_sha256 hash on its blocking thread.
    pub hash_seconds: Histogram,
}

impl UsersMetrics {
    /// Register the metrics on `metrics`' registry.
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            registrations: metrics.counter_vec(
                "users_registrations_total",
                "Registration requests by outcome",
                &["outcome"],
            ),
            hash_queue_depth: metrics.gauge(
                "users_hash_queue_depth",
                "Registrations waiting for a password hashing slot",
            ),
            hash_in_progress: metrics.gauge(
                "users_hash_in_progress",
                "Password hashes running on the blocking pool",
            ),
            hash_seconds: metrics.histogram(
                "users_password_hash_seconds",
                "Time of one password hash (bcrypt_sha256) on its blocking thread",
                vec![
                    0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0,
                ],
            ),
        }
    }
}
