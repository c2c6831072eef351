//! The "sent" markers: `sms_sent:{request_id}` in the verify-codes Redis, set once the provider
//! accepted a job's message. The queue delivers at least once (a redelivered or orphaned job
//! comes back), so the worker checks the marker before sending; CCP's `reqId` de-duplication
//! is the second guard for the window between the provider's answer and the marker write.
//!
//! Beside them, in the same Redis, the attempt counters `sms_send_attempts:{request_id}`: the
//! provider calls made for a job so far, by any worker. A counter in memory would start again
//! at 1 whenever the job is redelivered (SIGTERM requeue, orphan recovery, a new worker), so
//! one job could reach the provider `SMS_MAX_ATTEMPTS` × k times; the shared one cannot.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::Utc;
use redis::AsyncCommands as _;
use shared::jobs::SendSmsCode;
use shared::keys;
use shared::redis_client::{RedisClient, Replay};

/// How long a marker outlives its code: a job is dropped once its code has expired, so the
/// marker is only needed until then; the margin covers clock skew between workers.
const MARGIN_SECS: i64 = 60;

/// Access to the markers (the shared self-repairing connection).
#[derive(Clone)]
pub struct SentMarkers {
    conn: RedisClient,
}

impl std::fmt::Debug for SentMarkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentMarkers").finish_non_exhaustive()
    }
}

/// KEYS: the sent marker, `sms_{mobile}`; ARGV: the job's code. Returns `{marker exists (0/1),
/// ms the code has left}` (-2: no such code any more, -1: no expiry). Reads only.
static CHECK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local left = -2
if redis.call('GET', KEYS[2]) == ARGV[1] then left = redis.call('PTTL', KEYS[2]) end
return {redis.call('EXISTS', KEYS[1]), left}
",
    )
});

/// What the verify-codes Redis says about a job, by its clock alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// The provider accepted this job's message before.
    pub sent: bool,
    /// How long the job's code is still accepted (the `PTTL` of `sms_{mobile}` while it holds
    /// this job's code); `None`: it no longer is (expired, replaced by a newer code, used,
    /// deleted after wrong guesses).
    pub code_left: Option<Duration>,
}

impl SentMarkers {
    /// Markers kept through `conn`, the verify-codes connection.
    pub fn new(conn: RedisClient) -> Self {
        Self { conn }
    }

    /// Whether `job`'s message was already accepted by the provider.
    pub async fn is_sent(&self, job: &SendSmsCode) -> redis::RedisResult<bool> {
        // A read: safe to resend.
        self.conn
            .replay(Replay::Safe)
            .exists(keys::sms_sent(&job.request_id))
            .await
    }

    /// Whether `job`'s message was already accepted, and how long its code has left: one
    /// round trip, replay-safe (reads only).
    pub async fn check(&self, job: &SendSmsCode) -> redis::RedisResult<Check> {
        let (sent, left_ms): (i64, i64) = CHECK
            .key(keys::sms_sent(&job.request_id))
            .key(keys::sms_code(&job.mobile))
            .arg(job.code.as_str())
            .invoke_async(&mut self.conn.replay(Replay::Safe))
            .await?;
        let code_left = match left_ms {
            // A code without expiry (verifications-svc never writes one): its nominal life.
            -1 => Some(Duration::from_secs(u64::from(job.ttl_minutes) * 60)),
            ms => u64::try_from(ms)
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
        };
        Ok(Check {
            sent: sent == 1,
            code_left,
        })
    }

    /// Record that `job`'s message was accepted (SET NX EX: the first writer wins, and the
    /// marker disappears shortly after the code expires).
    pub async fn mark_sent(&self, job: &SendSmsCode) -> redis::RedisResult<()> {
        let ttl = (job.expires_at() - Utc::now()).num_seconds().max(0) + MARGIN_SECS;
        redis::cmd("SET")
            .arg(keys::sms_sent(&job.request_id))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl)
            // Safe to resend: a second SET NX finds the marker set, which is the goal; the
            // reply is not used.
            .query_async::<Option<String>>(&mut self.conn.replay(Replay::Safe))
            .await
            .map(drop)
    }

    /// Count one provider attempt for `job` and return the count including it: `INCR`, then
    /// `PEXPIRE` to the code's remaining life, in one `MULTI`/`EXEC` round trip (atomic, so
    /// two workers holding the same job never read the same number, and the counter never
    /// outlives the code: once the code expired the job is dropped before any attempt).
    pub async fn count_attempt(&self, job: &SendSmsCode) -> redis::RedisResult<u32> {
        let remaining_ms = (job.expires_at() - Utc::now()).num_milliseconds().max(1);
        let key = keys::sms_send_attempts(&job.request_id);
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .pexpire(&key, remaining_ms)
            .ignore()
            // Not resent: the INCR counts a provider attempt; a second run would count two.
            .query_async(&mut self.conn.replay(Replay::Never))
            .await?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// `PING`, for `/readyz`.
    pub async fn ping(&self) -> Result<(), String> {
        self.conn.ping().await
    }
}

/// The pending-attempt record and the quota refund (`shared::keys` names them).
impl SentMarkers {
    /// Record that a call of `job` to `provider` is about to be made (lives as long as the
    /// code: after that the job is dropped anyway).
    pub async fn begin_attempt(&self, job: &SendSmsCode, provider: &str) -> redis::RedisResult<()> {
        let ttl = (job.expires_at() - Utc::now()).num_seconds().max(1);
        self.conn
            .replay(Replay::Safe)
            .set_ex(
                keys::sms_attempt_pending(&job.request_id),
                provider,
                ttl.unsigned_abs(),
            )
            .await
    }

    /// The call's answer showed that nothing was sent: forget the pending attempt.
    pub async fn end_attempt(&self, job: &SendSmsCode) -> redis::RedisResult<()> {
        self.conn
            .replay(Replay::Safe)
            .del(keys::sms_attempt_pending(&job.request_id))
            .await
    }

    /// The provider of a call of `job` whose answer nobody saw, if any.
    pub async fn pending_attempt(&self, job: &SendSmsCode) -> redis::RedisResult<Option<String>> {
        self.conn
            .replay(Replay::Safe)
            .get(keys::sms_attempt_pending(&job.request_id))
            .await
    }

    /// Give back `job`'s hit on the mobile's daily limit, once per job (a redelivered job finds
    /// the refund marker), never below zero. Whether it was given back.
    pub async fn refund_quota(&self, job: &SendSmsCode) -> redis::RedisResult<bool> {
        let ttl = (job.expires_at() - Utc::now()).num_seconds().max(1) + MARGIN_SECS;
        REFUND
            .key(keys::sms_quota_refunded(&job.request_id))
            .key(keys::rate_limit(
                keys::SMS_MOBILE_SCOPE,
                job.mobile.as_str(),
            ))
            .arg(ttl)
            // Safe to resend: a second run finds the refund marker and gives nothing back.
            .invoke_async(&mut self.conn.replay(Replay::Safe))
            .await
    }
}

static REFUND: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[1]) then
  return 0
end
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
  return 1
end
return 0
",
    )
});
