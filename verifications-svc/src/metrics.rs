//! The service's own Prometheus metrics, registered on the shared registry next to the HTTP ones.
//! `deploy/prometheus/alerts.yml` alerts on them.

use prometheus::{IntCounterVec, IntGaugeVec};
use shared::domain::Mobile;
use shared::metrics::Metrics;

use crate::store::{Budget, BudgetWindow};

/// Codes issued, SMS sends refused, and the global budget.
#[derive(Debug, Clone)]
pub struct VerificationMetrics {
    /// `codes_issued_total{kind="image"|"sms"}`.
    pub codes_issued: IntCounterVec,
    /// `sms_sends_refused_total{reason}`: `invalid_input`, `image_code_invalid`,
    /// `image_code_wrong`, `captcha_limit`, `too_frequent`, `mobile_limit`, `ip_limit`,
    /// `prefix_limit`, `subnet_limit`, `budget_spent`, `unavailable`.
    pub sends_refused: IntCounterVec,
    /// `sms_sends_by_prefix_total{prefix}`: SMS codes issued by the mobile's first three digits
    /// (its carrier block; at most 70 values), for spike alerts without a series per number.
    pub sends_by_prefix: IntCounterVec,
    /// `sms_budget_used{window}`: the global budget counter of each window after the last send
    /// this process made (every replica reports the shared counter: alert on `max`).
    pub budget_used: IntGaugeVec,
    /// `sms_budget_limit{window}`: `SMS_BUDGET_PER_MINUTE|HOUR|DAY`.
    pub budget_limit: IntGaugeVec,
    /// `captchas_refused_total{reason="issue_limit"}`: over
    /// `CAPTCHA_ISSUE_LIMIT_PER_IP_PER_MINUTE`.
    pub captchas_refused: IntCounterVec,
}

impl VerificationMetrics {
    /// Register the counters on `metrics`' registry.
    pub fn register(metrics: &Metrics, budget: Budget) -> Self {
        let me = Self {
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
            sends_by_prefix: metrics.counter_vec(
                "sms_sends_by_prefix_total",
                "SMS codes issued, by the mobile's first three digits",
                &["prefix"],
            ),
            budget_used: metrics.gauge_vec(
                "sms_budget_used",
                "Global SMS budget counter of each window after this process's last send",
                &["window"],
            ),
            budget_limit: metrics.gauge_vec(
                "sms_budget_limit",
                "Global SMS budget of each window",
                &["window"],
            ),
            captchas_refused: metrics.counter_vec(
                "captchas_refused_total",
                "Captcha requests refused before rendering, by reason",
                &["reason"],
            ),
        };
        for w in BudgetWindow::ALL {
            me.budget_limit
                .with_label_values(&[w.name()])
                .set(i64::try_from(w.limit(budget)).unwrap_or(i64::MAX));
        }
        me
    }

    /// Count one SMS code issued to `mobile`, with the budget counters it left.
    pub fn sms_issued(&self, mobile: &Mobile, budget_used: [u64; 3]) {
        self.codes_issued.with_label_values(&["sms"]).inc();
        self.sends_by_prefix
            .with_label_values(&[&mobile.as_str()[..3]])
            .inc();
        for (w, used) in BudgetWindow::ALL.into_iter().zip(budget_used) {
            self.budget_used
                .with_label_values(&[w.name()])
                .set(i64::try_from(used).unwrap_or(i64::MAX));
        }
    }
}
