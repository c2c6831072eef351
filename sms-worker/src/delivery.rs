//! Delivering one job (docs/sms-jobs.md §2; docs/providers.md has each provider's story
//! after a lost answer).
//!
//! 1. A job whose code has expired (`created_at + ttl`) is dropped, never sent.
//! 2. A job whose "sent" marker exists was delivered before (the queue redelivers at least
//!    once): nothing is sent again.
//! 3. Otherwise providers are called, at most `SMS_MAX_ATTEMPTS` times per job in all, counted
//!    in Redis (`sms_send_attempts:{request_id}`, see [`crate::markers`]) right before each
//!    call, so the limit holds across redeliveries and workers.
//!    - A fresh send goes to the first provider of `SMS_PROVIDERS` whose breaker lets it
//!      through ([`crate::breaker`]; if every breaker is open, to the first anyway).
//!    - After a **definite** failure (connection refused, a gateway's 502/503/429, a retryable
//!      provider code) the next attempt goes to the next provider at once, or after an
//!      exponentially growing, jittered delay when that is the same provider.
//!    - After an **ambiguous** failure (the answer was lost: the SMS may have gone out) the next
//!      attempt stays on that provider and asks it first ([`SmsProvider::resolve`]): CCP
//!      de-duplicates by `reqId`, so it simply sends again; Aliyun is asked
//!      `QuerySendDetails`; Tencent's receipts are searched for our `SessionContext`. Only a
//!      provider that says "not sent" frees the job for any provider, so one request never
//!      becomes two codes from two providers. Still unknown when the attempts run out: the job
//!      ends `unconfirmed`.
//!    - A permanent refusal that is a property of the number ends the job; one that is a
//!      property of our account at that provider moves the job to the next provider.
//!    - Before each call the provider is written to `sms_attempt_pending:{request_id}` and
//!      removed once an answer showed nothing was sent: a worker that picks up the job of a
//!      crashed one finds it and treats that call as ambiguous.
//! 4. On success the marker is set. A job that ends `exhausted` or `permanent` gives the
//!    mobile's daily-quota hit back (the user was never served), once.
//!
//! If the verify-codes Redis is unreachable, codes are still sent, as with the markers: the
//! attempt number then continues from the last one Redis gave (from 1 for a job that never
//! reached it), so this process still makes at most `SMS_MAX_ATTEMPTS` calls per delivery,
//! but the cross-redelivery limit is lost for as long as Redis is down. An unsent code blocks
//! a registration; a few extra calls for a job cost little.
//!
//! Every log line of a job is inside its `sms_job` span (masked mobile, request id); codes are
//! never logged.

use std::time::{Duration, Instant};

use chrono::Utc;
use shared::jobs::SendSmsCode;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::breaker::Breaker;
use crate::config::Retry;
use crate::markers::SentMarkers;
use crate::metrics::WorkerMetrics;
use crate::provider::{Attempt, Provider, Resolution, Scope, SmsProvider};

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A provider accepted the message.
    Sent,
    /// A marker showed an earlier delivery; nothing was sent.
    AlreadySent,
    /// Refused for good: for a reason of the number, or by every provider for reasons of our
    /// account there.
    Permanent,
    /// Every attempt failed definitely (nothing was sent).
    Exhausted,
    /// The code expired before it could be sent.
    Expired,
    /// The worker is stopping while the job waited for a retry: it goes back to the queue.
    Requeued,
    /// The last call's answer was lost and the provider could not say whether it sent it; not
    /// sent again, so the user may or may not have the code.
    Unconfirmed,
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
            Self::Unconfirmed => "unconfirmed",
        }
    }
}

/// A provider with its circuit breaker, in `SMS_PROVIDERS` order.
#[derive(Debug)]
pub struct Route {
    pub provider: Provider,
    pub breaker: Breaker,
}

/// Everything a delivery needs, built once per process.
#[derive(Debug)]
pub struct Deliverer {
    routes: Vec<Route>,
    markers: SentMarkers,
    retry: Retry,
    metrics: WorkerMetrics,
    stopping: watch::Receiver<bool>,
}

/// Where one delivery stands between attempts (indices into the routes).
#[derive(Debug, Default)]
struct Progress {
    /// The last attempt number used: the fallback base when Redis cannot count.
    previous: u32,
    /// A call to this provider has no known answer: the next attempt asks it first.
    ambiguous_on: Option<usize>,
    /// The provider of the last definite failure: the next choice starts after it.
    failed_on: Option<usize>,
    /// The provider already chosen for the next attempt.
    chosen: Option<usize>,
    /// Providers that refused for a reason of our account there.
    excluded: Vec<bool>,
    /// The provider of the last attempt (the per-provider outcome metric).
    last: Option<usize>,
}

/// What follows an attempt.
#[derive(Debug)]
enum Next {
    Done(Outcome),
    Retry(Duration),
}

impl Deliverer {
    pub fn new(
        routes: Vec<Route>,
        markers: SentMarkers,
        retry: Retry,
        metrics: WorkerMetrics,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            routes,
            markers,
            retry,
            metrics,
            stopping,
        }
    }

    /// Deliver `job`, count the outcome, and give the quota back when nobody could deliver it.
    pub async fn deliver(&self, job: &SendSmsCode) -> Outcome {
        let span =
            tracing::info_span!("sms_job", mobile = %job.mobile, sms_request_id = %job.request_id);
        let (outcome, provider) = self.run(job).instrument(span.clone()).await;
        self.metrics
            .jobs
            .with_label_values(&[outcome.label()])
            .inc();
        if let Some(provider) = provider {
            self.metrics
                .provider_jobs
                .with_label_values(&[provider, outcome.label()])
                .inc();
        }
        if matches!(outcome, Outcome::Exhausted | Outcome::Permanent) {
            self.refund(job).instrument(span).await;
        }
        outcome
    }

    /// The outcome, and the provider of the last attempt.
    async fn run(&self, job: &SendSmsCode) -> (Outcome, Option<&'static str>) {
        if let Some(outcome) = self.precheck(job).await {
            return (outcome, None);
        }
        let mut progress = self.progress(job).await;
        loop {
            let next = self.attempt(job, &mut progress).await;
            let provider = progress.last.map(|i| self.routes[i].provider.name());
            match next {
                Next::Done(outcome) => return (outcome, provider),
                Next::Retry(delay) => {
                    if !self.sleep_unless_stopping(delay).await {
                        tracing::info!(
                            attempt = progress.previous,
                            "stopping: job goes back to the queue for its next attempt"
                        );
                        return (Outcome::Requeued, provider);
                    }
                }
            }
        }
    }

    /// Already sent, or the code no longer valid: the job is finished before any call. Both
    /// are read from the verify-codes Redis in one script ([`SentMarkers::check`]): Redis'
    /// clock alone (the `PTTL` of `sms_{mobile}` while it holds this job's code) says whether
    /// the code still lives. While that Redis cannot be read nothing is sent blind: the job
    /// waits ([`Deliverer::patiently`]), at most the code's full life from now.
    async fn precheck(&self, job: &SendSmsCode) -> Option<Outcome> {
        let longest = Instant::now() + Duration::from_secs(u64::from(job.ttl_minutes) * 60);
        let check = match self
            .patiently(longest, "read the sent marker", || self.markers.check(job))
            .await
        {
            Ok(check) => check,
            Err(outcome) => return Some(outcome),
        };
        if check.sent {
            tracing::info!("already sent: redelivered job skipped");
            return Some(Outcome::AlreadySent);
        }
        if check.code_left.is_none() {
            tracing::warn!(created_at = %job.created_at, "the code is no longer valid (expired, replaced, used): job dropped");
            return Some(Outcome::Expired);
        }
        None
    }

    /// Run `op` against the verify-codes Redis until it answers. While Redis cannot be reached
    /// the job waits (the retries' jittered backoff) instead of going on blind (a marker not
    /// read could mean a second SMS): `Err(Expired)` once the next try would come after
    /// `deadline`, `Err(Requeued)` if the worker begins stopping meanwhile.
    async fn patiently<T, F, Fut>(
        &self,
        deadline: Instant,
        what: &'static str,
        op: F,
    ) -> Result<T, Outcome>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let mut waits = 0u32;
        loop {
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            waits = waits.saturating_add(1);
            let delay = backoff(&self.retry, waits);
            if Instant::now() + delay >= deadline {
                tracing::error!(%error, what, "the verify-codes Redis stayed unreachable until the code expires: job dropped");
                return Err(Outcome::Expired);
            }
            self.metrics.redis_waits.inc();
            tracing::warn!(%error, what, delay_ms = delay.as_millis() as u64, "the verify-codes Redis is unreachable; waiting");
            if !self.sleep_unless_stopping(delay).await {
                return Err(Outcome::Requeued);
            }
        }
    }

    /// Count a job that was not delivered because its payload did not decode.
    pub fn count_dead_letter(&self) {
        self.metrics.jobs.with_label_values(&["dead_letter"]).inc();
    }

    /// A fresh progress; a call of an earlier delivery with no known answer makes it start
    /// ambiguous on that provider.
    async fn progress(&self, job: &SendSmsCode) -> Progress {
        let mut progress = Progress {
            excluded: vec![false; self.routes.len()],
            ..Progress::default()
        };
        match self.markers.pending_attempt(job).await {
            Ok(Some(name)) => {
                progress.ambiguous_on = self.routes.iter().position(|r| r.provider.name() == name);
                tracing::warn!(provider = %name, "an earlier delivery's call has no known answer: asking that provider first");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the pending attempt; assuming none"),
        }
        progress
    }

    /// The provider for a fresh send: the first not excluded whose breaker lets it through,
    /// starting after the one that just failed; if every breaker is open, the first not
    /// excluded anyway (waiting would not heal them, and the backoff still paces the calls).
    fn pick(&self, progress: &Progress) -> Option<usize> {
        let n = self.routes.len();
        let start = progress.failed_on.map_or(0, |i| i + 1);
        let mut order = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| !progress.excluded.get(i).copied().unwrap_or(false));
        let first = order.clone().next();
        order.find(|&i| self.routes[i].breaker.allows()).or(first)
    }

    /// One attempt: the provider, the count, the lookup if the last answer was lost, the call.
    async fn attempt(&self, job: &SendSmsCode, progress: &mut Progress) -> Next {
        let chosen = progress.chosen.take();
        let Some(index) = progress
            .ambiguous_on
            .or(chosen)
            .or_else(|| self.pick(progress))
        else {
            tracing::error!("every provider refused for a reason of our account there");
            return Next::Done(Outcome::Permanent);
        };
        progress.last = Some(index);
        let attempt = self.count_attempt(job, progress).await;
        let (max, provider) = (self.retry.max_attempts, self.routes[index].provider.name());
        if attempt > max {
            // Earlier deliveries of this job (before a requeue, a crash or a restart) already
            // used every attempt.
            tracing::error!(
                attempt,
                max,
                provider,
                "no attempts left from earlier deliveries; provider not called"
            );
            return Next::Done(if progress.ambiguous_on.is_some() {
                Outcome::Unconfirmed
            } else {
                Outcome::Exhausted
            });
        }
        if progress.ambiguous_on.is_some()
            && let Some(next) = self.resolve(index, job, attempt, progress).await
        {
            return next;
        }
        let result = self.call(index, job).await;
        self.settle(index, job, attempt, result, progress).await
    }

    /// Ask the provider about the call whose answer was lost. `None`: send again (it
    /// de-duplicates); otherwise what follows.
    async fn resolve(
        &self,
        index: usize,
        job: &SendSmsCode,
        attempt: u32,
        progress: &mut Progress,
    ) -> Option<Next> {
        let route = &self.routes[index];
        let provider = route.provider.name();
        let started = Instant::now();
        let resolution = route.provider.resolve(job).await;
        if resolution != Resolution::Resend {
            self.observe(provider, resolution.label(), started);
        }
        match resolution {
            Resolution::Resend => None,
            Resolution::Sent => {
                route.breaker.success();
                self.mark_sent(job).await;
                tracing::info!(
                    attempt,
                    provider,
                    "the provider has the message: it was sent"
                );
                Some(Next::Done(Outcome::Sent))
            }
            Resolution::NotSent => {
                route.breaker.success();
                progress.ambiguous_on = None;
                self.end_attempt(job).await;
                tracing::info!(
                    attempt,
                    provider,
                    "the provider has no such message: any provider may send it"
                );
                Some(Next::Retry(Duration::ZERO))
            }
            Resolution::Unknown { reason } => {
                Some(self.retry_or(job, attempt, Outcome::Unconfirmed, &reason, provider))
            }
        }
    }

    /// One call, with the pending-attempt record before it and its latency observed.
    async fn call(&self, index: usize, job: &SendSmsCode) -> Attempt {
        let route = &self.routes[index];
        let provider = route.provider.name();
        if let Err(e) = self.markers.begin_attempt(job, provider).await {
            tracing::warn!(error = %e, provider, "cannot record the pending attempt; sending anyway");
        }
        let started = Instant::now();
        let result = route.provider.send(job).await;
        self.observe(provider, result.label(), started);
        result
    }

    /// Act on the result of a call.
    async fn settle(
        &self,
        index: usize,
        job: &SendSmsCode,
        attempt: u32,
        result: Attempt,
        progress: &mut Progress,
    ) -> Next {
        let route = &self.routes[index];
        let provider = route.provider.name();
        match result {
            Attempt::Sent => {
                route.breaker.success();
                self.mark_sent(job).await;
                tracing::info!(attempt, provider, "SMS code sent");
                Next::Done(Outcome::Sent)
            }
            Attempt::Permanent {
                code,
                reason,
                scope,
            } => {
                self.end_attempt(job).await;
                self.refused(index, attempt, (&code, &reason, scope), progress)
            }
            Attempt::Retryable { reason } => {
                route.breaker.failure();
                self.end_attempt(job).await;
                progress.failed_on = Some(index);
                self.after_definite_failure(index, job, attempt, &reason, progress)
            }
            Attempt::Ambiguous { reason } => {
                route.breaker.failure();
                progress.ambiguous_on = Some(index);
                self.retry_or(job, attempt, Outcome::Unconfirmed, &reason, provider)
            }
        }
    }

    /// A permanent refusal: for a reason of the number the job ends (another provider would
    /// only get round the number's limits); for a reason of our account there, the next
    /// attempt goes to the next provider not excluded, at once.
    fn refused(
        &self,
        index: usize,
        attempt: u32,
        (code, reason, scope): (&str, &str, Scope),
        progress: &mut Progress,
    ) -> Next {
        let route = &self.routes[index];
        let provider = route.provider.name();
        if scope == Scope::Number {
            // The provider works: this is about the number.
            route.breaker.success();
            tracing::error!(
                attempt,
                provider,
                code,
                reason,
                "provider refused the message for a reason of the number; not tried elsewhere"
            );
            return Next::Done(Outcome::Permanent);
        }
        route.breaker.failure();
        progress.excluded[index] = true;
        progress.failed_on = Some(index);
        tracing::error!(
            attempt,
            provider,
            code,
            reason,
            "provider refused the message for a reason of our account there"
        );
        if attempt >= self.retry.max_attempts {
            Next::Done(Outcome::Permanent)
        } else {
            Next::Retry(Duration::ZERO)
        }
    }

    /// After a definite failure: the next provider at once, or the same one after a backoff.
    fn after_definite_failure(
        &self,
        index: usize,
        job: &SendSmsCode,
        attempt: u32,
        reason: &str,
        progress: &mut Progress,
    ) -> Next {
        let provider = self.routes[index].provider.name();
        if attempt < self.retry.max_attempts {
            progress.chosen = self.pick(progress);
            if let Some(next) = progress.chosen.filter(|&next| next != index) {
                let next = self.routes[next].provider.name();
                tracing::warn!(
                    attempt,
                    provider,
                    reason,
                    next,
                    "provider call failed; failing over"
                );
                self.metrics.retries.inc();
                return Next::Retry(Duration::ZERO);
            }
        }
        self.retry_or(job, attempt, Outcome::Exhausted, reason, provider)
    }

    /// Wait and try again, unless the attempts are used up (then `last`) or the code would
    /// expire first.
    fn retry_or(
        &self,
        job: &SendSmsCode,
        attempt: u32,
        last: Outcome,
        reason: &str,
        provider: &str,
    ) -> Next {
        if attempt >= self.retry.max_attempts {
            tracing::error!(
                attempt,
                provider,
                reason,
                outcome = last.label(),
                "provider call failed; no attempts left"
            );
            return Next::Done(last);
        }
        let delay = backoff(&self.retry, attempt);
        let next = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        if next >= job.expires_at() {
            tracing::warn!(
                attempt,
                provider,
                reason,
                "provider call failed and the code expires before the next attempt: job dropped"
            );
            return Next::Done(Outcome::Expired);
        }
        tracing::warn!(
            attempt,
            provider,
            reason,
            delay_ms = delay.as_millis() as u64,
            "provider call failed; retrying"
        );
        self.metrics.retries.inc();
        Next::Retry(delay)
    }

    fn observe(&self, provider: &str, result: &str, started: Instant) {
        self.metrics
            .provider_latency
            .with_label_values(&[provider, result])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The attempt number from Redis, or one more than the last one if Redis cannot count.
    async fn count_attempt(&self, job: &SendSmsCode, progress: &mut Progress) -> u32 {
        let attempt = match self.markers.count_attempt(job).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the attempt in Redis; counting in memory and sending anyway");
                progress.previous.saturating_add(1)
            }
        };
        progress.previous = attempt;
        attempt
    }

    async fn mark_sent(&self, job: &SendSmsCode) {
        if let Err(e) = self.markers.mark_sent(job).await {
            tracing::warn!(error = %e, "sent, but the sent marker could not be written");
        }
    }

    async fn end_attempt(&self, job: &SendSmsCode) {
        if let Err(e) = self.markers.end_attempt(job).await {
            tracing::warn!(error = %e, "cannot clear the pending attempt; a redelivery will ask the provider first");
        }
    }

    async fn refund(&self, job: &SendSmsCode) {
        match self.markers.refund_quota(job).await {
            Ok(true) => {
                self.metrics.quota_refunds.inc();
                tracing::info!(
                    "no provider delivered the code: the mobile's daily-quota hit is given back"
                );
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot give the daily-quota hit back"),
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
