//! The verify-codes Redis database: the connection, and every command and script this service
//! runs against it. Key names come only from `shared::keys`.
//!
//! ## Connection
//! One multiplexed `ConnectionManager` per HTTP worker, not a pool: every request's commands are
//! pipelined on that worker's one socket, with no checkout round trip (deadpool-redis pings each
//! connection on checkout, which would cost one extra round trip per request). It connects on
//! first use and reconnects by itself after an I/O error, so the service recovers when Redis
//! comes back; connect and response timeouts make a request fail fast (503) while it is down.
//!
//! ## Round trips of `GET /sms_codes/` (three on success)
//! 1. [`take_image_code`]: one Lua script GETDELs `img_{id}` (consumed whether right or wrong)
//!    and reports whether `send_flag_{mobile}` exists, so the three 400s need one round trip.
//! 2. [`claim_send`]: one Lua script, atomic: `SET send_flag NX EX 60` (the real guard: of any
//!    number of concurrent requests exactly one gets past it); then the two fixed-window
//!    rate limits (`rl:sms_mobile:{mobile}` 24 h, `rl:sms_ip:{ip}` 1 h, `{ip}` being
//!    `shared::client_ip::limit_key`: an IPv6 client's /64): both are checked
//!    first, then a send both allow counts against both, and a refused send counts only
//!    against the limit(s) that refused it (refused hits of that limit count too, as in
//!    `shared::rate_limit`, so hammering does not help; but users behind one NAT who hit the
//!    IP limit do not use up their own phones' daily quota). Over a limit, the flag is given
//!    back; else `SETEX sms_{mobile} 300` and `DEL sms_attempts_{mobile}`.
//! 3. the apalis push (on the queue's own connection; task id = the request id, so a push
//!    that errors after Redis stored it is found by one exact lookup and not undone).
//!
//! The claim also returns the code it replaced (and its wrong-guess counter) with their PTTLs,
//! at no extra round trip. If the push fails, [`release_send`] (a fourth round trip, only then)
//! gives back the flag and puts that previous code back with the life it had left (or deletes
//! the new code if there was none), each only if the key still holds this request's value, and
//! refunds the two rate-limit hits: a queue outage neither sends a code nor wipes the one the
//! user already has, and the user can simply retry.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use shared::domain::{ImageCodeId, Mobile, SmsCode};
use shared::keys;

/// Rate-limit scope of the per-mobile daily limit (`rl:sms_mobile:{mobile}`).
pub const MOBILE_SCOPE: &str = "sms_mobile";
/// Rate-limit scope of the per-IP hourly limit (`rl:sms_ip:{ip}`).
pub const IP_SCOPE: &str = "sms_ip";
/// Window of the per-mobile limit.
pub const MOBILE_WINDOW_SECS: u64 = 24 * 3600;
/// Window of the per-IP limit.
pub const IP_WINDOW_SECS: u64 = 3600;

/// A lazily connecting, self-reconnecting connection to `url`.
pub fn connect(url: &str, timeout: Duration) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url).map_err(|e| {
        anyhow::anyhow!(
            "REDIS_URL {} is not a usable Redis URL: {e}",
            shared::redis_pool::redacted(url)
        )
    })?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

/// `PING`, for `/readyz`.
pub async fn ping(conn: &ConnectionManager) -> Result<(), String> {
    redis::cmd("PING")
        .query_async::<String>(&mut conn.clone())
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// `SETEX img_{id} 300 text`: a repeated id replaces the old text.
pub async fn store_image_code(
    conn: &ConnectionManager,
    id: &ImageCodeId,
    text: &str,
) -> redis::RedisResult<()> {
    redis::cmd("SETEX")
        .arg(keys::image_code(id))
        .arg(keys::IMAGE_CODE_TTL_SECS)
        .arg(text)
        .query_async(&mut conn.clone())
        .await
}

static TAKE_IMAGE_CODE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local text = redis.call('GETDEL', KEYS[1])
return {text, redis.call('EXISTS', KEYS[2])}
",
    )
});

/// What round trip 1 found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The captcha text, now deleted; `None` if there was none (expired, used, never issued).
    pub text: Option<String>,
    /// `send_flag_{mobile}` exists: a code was sent in the last 60 s.
    pub recently_sent: bool,
}

/// GETDEL `img_{id}` and check `send_flag_{mobile}`, atomically, in one round trip.
pub async fn take_image_code(
    conn: &ConnectionManager,
    id: &ImageCodeId,
    mobile: &Mobile,
) -> redis::RedisResult<Taken> {
    let (text, flag): (Option<String>, i64) = TAKE_IMAGE_CODE
        .key(keys::image_code(id))
        .key(keys::send_flag(mobile))
        .invoke_async(&mut conn.clone())
        .await?;
    Ok(Taken {
        text,
        recently_sent: flag == 1,
    })
}

static CLAIM_SEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS: send_flag, sms code, attempts, rl mobile, rl ip
-- ARGV: request id, flag ttl, code, code ttl, mobile limit, mobile window, ip limit, ip window
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return {0, 0, 0, false, -2, false, -2}
end
local function hit(key, window)
  local n = redis.call('INCR', key)
  local ttl = redis.call('TTL', key)
  if ttl < 0 then
    redis.call('EXPIRE', key, window)
    ttl = tonumber(window)
  end
  return n, ttl
end
-- Decide first, count after: a send refused by one limit is counted only against the limit that
-- refused it (hammering that limit still counts), so hitting the per-IP limit does not use up the
-- mobile's daily quota or the other way round; a send both allow counts against both.
local function over(key, limit)
  return tonumber(redis.call('GET', key) or '0') + 1 > tonumber(limit)
end
local over_mobile = over(KEYS[4], ARGV[5])
local over_ip = over(KEYS[5], ARGV[7])
local refused = over_mobile or over_ip
local which, wait = 0, 1
if over_mobile or not refused then
  local _, ttl = hit(KEYS[4], ARGV[6])
  if over_mobile then
    which = which + 1
    wait = math.max(wait, ttl)
  end
end
if over_ip or not refused then
  local _, ttl = hit(KEYS[5], ARGV[8])
  if over_ip then
    which = which + 2
    wait = math.max(wait, ttl)
  end
end
if which > 0 then
  redis.call('DEL', KEYS[1])
  return {2, wait, which, false, -2, false, -2}
end
-- What the new code replaces, so that a failed queue push can put it back (release_send)
-- without another round trip on the success path.
local prev_code = redis.call('GET', KEYS[2])
local prev_code_pttl = redis.call('PTTL', KEYS[2])
local prev_attempts = redis.call('GET', KEYS[3])
local prev_attempts_pttl = redis.call('PTTL', KEYS[3])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
redis.call('DEL', KEYS[3])
return {1, 0, 0, prev_code, prev_code_pttl, prev_attempts, prev_attempts_pttl}
",
    )
});

/// The two abuse limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    pub per_mobile_per_day: u64,
    pub per_ip_per_hour: u64,
}

/// One send about to be claimed.
#[derive(Debug)]
pub struct Claim<'a> {
    pub mobile: &'a Mobile,
    pub ip: Option<IpAddr>,
    pub code: &'a SmsCode,
    /// Stored as the flag's value, so only this request can give the flag back.
    pub request_id: uuid::Uuid,
}

impl Claim<'_> {
    /// `rl:sms_ip:{limit_key}`: an IPv6 client counts by its /64 (one subscriber holds a whole
    /// /64 and could otherwise take a fresh quota from each address), an IPv4-mapped address as
    /// the IPv4 it is.
    fn ip_key(&self) -> String {
        keys::rate_limit(
            IP_SCOPE,
            &self
                .ip
                .map_or_else(|| "unknown".to_owned(), shared::client_ip::limit_key),
        )
    }

    fn mobile_key(&self) -> String {
        keys::rate_limit(MOBILE_SCOPE, self.mobile.as_str())
    }
}

/// Which limit refused a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Mobile,
    Ip,
    Both,
}

/// The still-valid code a claim replaced, and its wrong-guess counter, as they were.
#[derive(Clone, PartialEq, Eq)]
pub struct Previous {
    pub code: String,
    /// Its remaining life when the claim ran; `None`: the key had no TTL.
    pub ttl: Option<Duration>,
    /// `sms_attempts_{mobile}` then (0 if absent), so a restored code gets no fresh guesses.
    pub attempts: u64,
    /// The counter's remaining life; `None`: absent or without TTL.
    pub attempts_ttl: Option<Duration>,
}

/// Not `derive(Debug)`: the code is a secret and must not reach a log.
impl std::fmt::Debug for Previous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Previous")
            .field("ttl", &self.ttl)
            .field("attempts", &self.attempts)
            .field("attempts_ttl", &self.attempts_ttl)
            .finish_non_exhaustive()
    }
}

/// What round trip 2 decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The flag is ours and the code is stored; `previous` is the code it replaced, if any.
    Claimed { previous: Option<Previous> },
    /// Another request holds the flag (sent within 60 s, or a concurrent winner).
    FlagTaken,
    /// Over an abuse limit; nothing stored, the flag given back.
    Limited { hit: LimitHit, retry_after: u64 },
}

/// Claim the send flag, count the rate limits, store the code: atomically, one round trip.
pub async fn claim_send(
    conn: &ConnectionManager,
    claim: &Claim<'_>,
    limits: SendLimits,
) -> redis::RedisResult<ClaimOutcome> {
    type Reply = (i64, u64, i64, Option<String>, i64, Option<String>, i64);
    let (status, wait, which, prev_code, prev_pttl, prev_attempts, attempts_pttl): Reply =
        CLAIM_SEND
            .key(keys::send_flag(claim.mobile))
            .key(keys::sms_code(claim.mobile))
            .key(keys::sms_attempts(claim.mobile))
            .key(claim.mobile_key())
            .key(claim.ip_key())
            .arg(claim.request_id.to_string())
            .arg(keys::SEND_FLAG_TTL_SECS)
            .arg(claim.code.as_str())
            .arg(keys::SMS_CODE_TTL_SECS)
            .arg(limits.per_mobile_per_day)
            .arg(MOBILE_WINDOW_SECS)
            .arg(limits.per_ip_per_hour)
            .arg(IP_WINDOW_SECS)
            .invoke_async(&mut conn.clone())
            .await?;
    // PTTL: -2 no key, -1 no expiry, else milliseconds left.
    let ttl = |pttl: i64| u64::try_from(pttl).ok().map(Duration::from_millis);
    Ok(match (status, which) {
        (1, _) => ClaimOutcome::Claimed {
            previous: prev_code.map(|code| Previous {
                code,
                ttl: ttl(prev_pttl),
                // Written only by INCR: a number; anything else counts as no guesses.
                attempts: prev_attempts
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_default(),
                attempts_ttl: ttl(attempts_pttl),
            }),
        },
        (2, 1) => ClaimOutcome::Limited {
            hit: LimitHit::Mobile,
            retry_after: wait,
        },
        (2, 2) => ClaimOutcome::Limited {
            hit: LimitHit::Ip,
            retry_after: wait,
        },
        (2, _) => ClaimOutcome::Limited {
            hit: LimitHit::Both,
            retry_after: wait,
        },
        _ => ClaimOutcome::FlagTaken,
    })
}

static RELEASE_SEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS: send_flag, sms code, attempts, rl mobile, rl ip
-- ARGV: request id, code, refund (1/0), previous code, its ms left (0: none or expired),
--       previous wrong guesses, their ms left (0: take the code's)
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
-- Only while the key still holds this request's code: a later send's code is left alone.
if redis.call('GET', KEYS[2]) == ARGV[2] then
  local left = tonumber(ARGV[5])
  if left > 0 then
    -- The code the user may already have received stays valid, with the life it had left.
    redis.call('SET', KEYS[2], ARGV[4], 'PX', left)
    local before = tonumber(ARGV[6])
    if before > 0 then
      -- Its wrong guesses come back too (plus any made since the claim), or a queue outage
      -- would hand out fresh guesses at a known code.
      local since = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
      local attempts_left = tonumber(ARGV[7])
      if attempts_left <= 0 then attempts_left = left end
      redis.call('SET', KEYS[3], before + since, 'PX', attempts_left)
    end
  else
    redis.call('DEL', KEYS[2])
  end
end
if ARGV[3] == '1' then
  for i = 4, 5 do
    -- only existing counters: DECR on a missing key would create one without a TTL
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('DECR', KEYS[i]) end
  end
end
return 1
",
    )
});

/// Undo a claim whose job could not be queued: give back the flag, and put `previous` (the
/// code the claim replaced, `elapsed` ago) back in place of this request's code, or delete the
/// code if there was none or it has expired meanwhile; each only if the key still holds this
/// request's value. `refund` also takes back the two rate-limit hits (only when the claim is
/// known to have run).
pub async fn release_send(
    conn: &ConnectionManager,
    claim: &Claim<'_>,
    refund: bool,
    previous: Option<&Previous>,
    elapsed: Duration,
) -> redis::RedisResult<()> {
    // Milliseconds of life left after `elapsed`; a key without TTL gets the full code TTL
    // (this service never writes one; better bounded than immortal).
    let left = |ttl: Option<Duration>| {
        let ttl = ttl.unwrap_or(Duration::from_secs(keys::SMS_CODE_TTL_SECS));
        u64::try_from(ttl.saturating_sub(elapsed).as_millis()).unwrap_or(u64::MAX)
    };
    let (code, code_left, attempts, attempts_left) =
        previous.map_or((String::new(), 0, 0, 0), |p| {
            (
                p.code.clone(),
                left(p.ttl),
                p.attempts,
                p.attempts_ttl.map_or(0, |t| left(Some(t))),
            )
        });
    RELEASE_SEND
        .key(keys::send_flag(claim.mobile))
        .key(keys::sms_code(claim.mobile))
        .key(keys::sms_attempts(claim.mobile))
        .key(claim.mobile_key())
        .key(claim.ip_key())
        .arg(claim.request_id.to_string())
        .arg(claim.code.as_str())
        .arg(if refund { "1" } else { "0" })
        .arg(code)
        .arg(code_left)
        .arg(attempts)
        .arg(attempts_left)
        .invoke_async::<i64>(&mut conn.clone())
        .await
        .map(drop)
}
