//! Delivering one job: the rules of docs/sms-jobs.md §2.
//!
//! 1. A job whose code has expired (`created_at + ttl`) is dropped, never sent.
//! 2. A job whose "sent" marker exists was delivered before (the queue redelivers at least
//!    once): nothing is sent again.
//! 3. Otherwise the provider is called, at most `SMS_MAX_ATTEMPTS` times per job, counted in
//!    Redis (`sms_send_attempts:{request_id}`, see [`crate::markers`]) right before each call,
//!    so the limit holds across redeliveries and workers; a job whose count has reached the
//!    maximum is finished as exhausted without a call. A retryable failure waits an
//!    exponentially growing, jittered delay, unless the code would expire first; a permanent
//!    failure is logged at error level with the provider's code and not retried.
//! 4. On success the marker is set.
//!
//! If the verify-codes Redis is unreachable, codes are still sent, as with the markers: the
//! attempt number then continues from the last one Redis gave (from 1 for a job that never
//! reached it), so this process still makes at most `SMS_MAX_ATTEMPTS` calls per delivery,
//! but the cross-redelivery limit is lost for as long as Redis is down. An unsent code blocks
//! a registration; a few extra calls for a job cost little, and CCP's `reqId` still stops a
//! second message.
//!
//! Mobiles are logged masked (`Mobile`'s `Display`); codes are never logged.

use std::time::{Duration, Instant};

use chrono::Utc;
use shared::jobs::SendSmsCode;
use tokio::sync::watch;

use crate::config::Retry;
use crate::markers::SentMarkers;
use crate::metrics::WorkerMetrics;
use crate::provider::{Attempt, Provider, SmsProvider};

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted the message.
    Sent,
    /// A marker showed an earlier delivery; nothing was sent.
    AlreadySent,
    /// The provider refused for good.
    Permanent,
    /// Every attempt failed with a retryable error.
    Exhausted,
    /// The code expired before it could be sent.
    Expired,
    /// The worker is stopping while the job waited for a retry: it goes back to the queue.
    Requeued,
}

impl Outcome {
    /// The `outcome` label of `sms_jobs_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::AlreadySent => "already_sent",
            Self::Permanent => "permanent",
            Self::Exhausted => "exhausted",
            Self::Expired => "expired",
            Self::Requeued => "requeued",
        }
    }
}

/// Everything a delivery needs, built once per process.
#[derive(Debug)]
pub struct Deliverer {
    provider: Provider,
    markers: SentMarkers,
    retry: Retry,
    metrics: WorkerMetrics,
    stopping: watch::Receiver<bool>,
}

impl Deliverer {
    pub fn new(
        provider: Provider,
        markers: SentMarkers,
        retry: Retry,
        metrics: WorkerMetrics,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            provider,
            markers,
            retry,
            metrics,
            stopping,
        }
    }

    /// Deliver `job` and count the outcome.
    pub async fn deliver(&self, job: &SendSmsCode) -> Outcome {
        let outcome = self.run(job).await;
        self.metrics
            .jobs
            .with_label_values(&[outcome.label()])
            .inc();
        outcome
    }

    async fn run(&self, job: &SendSmsCode) -> Outcome {
        let (mobile, request_id) = (&job.mobile, job.request_id);
        if job.is_expired(Utc::now()) {
            tracing::warn!(%mobile, sms_request_id = %request_id, created_at = %job.created_at, "code expired before it was sent: job dropped");
            return Outcome::Expired;
        }
        match self.markers.is_sent(job).await {
            Ok(true) => {
                tracing::info!(%mobile, sms_request_id = %request_id, "already sent: redelivered job skipped");
                return Outcome::AlreadySent;
            }
            Ok(false) => {}
            // Sending anyway is the better failure: the provider's reqId de-duplication still
            // stops a double send, and an undelivered code blocks a registration.
            Err(e) => {
                tracing::warn!(%mobile, sms_request_id = %request_id, error = %e, "cannot read the sent marker; sending anyway");
            }
        }

        let provider = self.provider.name();
        let max = self.retry.max_attempts;
        // The last attempt number this delivery used: the fallback base when Redis cannot count.
        let mut previous = 0u32;
        loop {
            let attempt = match self.markers.count_attempt(job).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(%mobile, sms_request_id = %request_id, error = %e, "cannot count the attempt in Redis; counting in memory and sending anyway");
                    previous.saturating_add(1)
                }
            };
            previous = attempt;
            if attempt > max {
                // Earlier deliveries of this job (before a requeue, a crash or a restart)
                // already used every attempt.
                tracing::error!(%mobile, sms_request_id = %request_id, attempt, max, provider, "no attempts left from earlier deliveries; provider not called");
                return Outcome::Exhausted;
            }
            let started = Instant::now();
            let result = self.provider.send(job).await;
            let elapsed = started.elapsed();
            let label = match &result {
                Attempt::Sent => "sent",
                Attempt::Retryable { .. } => "retryable",
                Attempt::Permanent { .. } => "permanent",
            };
            self.metrics
                .provider_latency
                .with_label_values(&[provider, label])
                .observe(elapsed.as_secs_f64());
            match result {
                Attempt::Sent => {
                    if let Err(e) = self.markers.mark_sent(job).await {
                        tracing::warn!(%mobile, sms_request_id = %request_id, error = %e, "sent, but the sent marker could not be written");
                    }
                    tracing::info!(%mobile, sms_request_id = %request_id, attempt, provider, ms = elapsed.as_millis() as u64, "SMS code sent");
                    return Outcome::Sent;
                }
                Attempt::Permanent { code, reason } => {
                    tracing::error!(%mobile, sms_request_id = %request_id, attempt, provider, code, reason, "provider refused the message; not retried");
                    return Outcome::Permanent;
                }
                Attempt::Retryable { reason } => {
                    if attempt >= max {
                        tracing::error!(%mobile, sms_request_id = %request_id, attempt, provider, reason, "provider call failed; no attempts left");
                        return Outcome::Exhausted;
                    }
                    let delay = backoff(&self.retry, attempt);
                    let next = Utc::now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                    if next >= job.expires_at() {
                        tracing::warn!(%mobile, sms_request_id = %request_id, attempt, provider, reason, "provider call failed and the code expires before the next attempt: job dropped");
                        return Outcome::Expired;
                    }
                    tracing::warn!(%mobile, sms_request_id = %request_id, attempt, provider, reason, delay_ms = delay.as_millis() as u64, "provider call failed; retrying");
                    self.metrics.retries.inc();
                    if !self.sleep_unless_stopping(delay).await {
                        tracing::info!(%mobile, sms_request_id = %request_id, attempt, "stopping: job goes back to the queue for its next attempt");
                        return Outcome::Requeued;
                    }
                }
            }
        }
    }

    /// Wait `delay`; `false` if the worker began stopping meanwhile.
    async fn sleep_unless_stopping(&self, delay: Duration) -> bool {
        let mut stopping = self.stopping.clone();
        if *stopping.borrow() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            _ = stopping.wait_for(|s| *s) => false,
        }
    }
}

/// The wait before attempt `attempt + 1`: base × 2^(attempt−1), capped, with "equal jitter"
/// (half fixed, half random) so that retries of many jobs spread out while each job's delays
/// still grow.
pub fn backoff(retry: &Retry, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    let full = retry.base_delay.saturating_mul(factor).min(retry.max_delay);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_up_to_the_cap() {
        let retry = Retry {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..200 {
            let d: Vec<Duration> = (1..=5).map(|a| backoff(&retry, a)).collect();
            let ms: Vec<u128> = d.iter().map(Duration::as_millis).collect();
            assert!((100..=200).contains(&ms[0]), "{ms:?}");
            assert!((200..=400).contains(&ms[1]), "{ms:?}");
            assert!((400..=800).contains(&ms[2]), "{ms:?}");
            assert!((500..=1000).contains(&ms[3]), "capped: {ms:?}");
            assert!((500..=1000).contains(&ms[4]), "capped: {ms:?}");
        }
        let spread: std::collections::HashSet<u128> =
            (0..50).map(|_| backoff(&retry, 2).as_millis()).collect();
        assert!(spread.len() > 5, "jittered: {spread:?}");
    }
}
