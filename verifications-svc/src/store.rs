//! The verify-codes Redis database: the connection, and every command and script this service
//! runs against it. Key names come only from `shared::keys`.
//!
//! ## Connection
//! One `shared::redis_client::RedisClient` per HTTP worker, not a pool: every request's
//! commands are pipelined on that worker's one socket, with no checkout round trip. It connects
//! on first use and replaces a connection Redis closed before a command goes out on it, so a
//! Redis restart between two requests costs no error; while Redis is down a request fails fast
//! (503). Each command below says whether it may be resent after the connection died under it
//! ([`Replay`]): only what may run twice is, or what a repeat at worst counts twice against a
//! rate limit.
//!
//! ## Round trip of `GET /image_codes/` (one)
//! [`issue_image_code`]: one Lua script counts the captcha against the client's issuance limit
//! and, within it, stores the text; it runs while the picture is being drawn (see
//! `domain::captcha::issue` for what a refused client costs).
//!
//! ## Round trips of `GET /sms_codes/` (two on success)
//! 1. [`claim_send`]: one Lua script, atomic:
//!    - the captcha: `GETDEL img_{id}` (consumed whether right or wrong), the compare, a wrong
//!      answer counted under `rl:captcha_fail:{ip}` (1 h). A client past
//!      `CAPTCHA_FAILURES_PER_IP_PER_HOUR` wrong answers is refused (429) before the compare,
//!      right answer or not, and its refusals are not counted;
//!    - `SET send_flag NX EX 60` (the resend guard, and the real one: of any number of
//!      concurrent requests exactly one gets past it);
//!    - the fixed-window counters: the client limits `rl:sms_mobile:{mobile}` (24 h),
//!      `rl:sms_ip:{ip}`, `rl:sms_prefix:{first 7 digits}` and `rl:sms_subnet:{/24 or /48}`
//!      (1 h each; `{ip}` is `shared::client_ip::limit_key`: an IPv6 client's /64), and the
//!      global budget `rl:sms_budget:minute|hour|day` shared by every replica. All are decided
//!      together (each counted with one `INCR`, and put back as it was if the send is
//!      refused): a send they all allow counts against all of them. A send a client limit
//!      refuses (429) counts only against the limit(s) that refused it (refused hits of that
//!      limit count too, as in `shared::rate_limit`, so hammering does not help; but users
//!      behind one NAT who hit the IP limit do not use up their own phones' daily quota) and
//!      never against the budget; a send only the budget refuses (503) counts nowhere, so the
//!      budget counters are exactly the SMS sent. Over a limit, the flag is given back;
//!    - else `SETEX sms_{mobile} 300`, `SETEX sms_owner_{mobile} 300 {ip}` (who asked: see
//!      users-svc's code check) and `DEL sms_attempts_{mobile}`.
//!
//!    The checks run in the original's order (captcha missing, wrong, then "too frequent"), so
//!    the 400s are the same. The captcha was a script of its own until 2026-12: a command
//!    costs Redis about 11 µs before its first key (read, parse, reply; measured with
//!    `redis-benchmark`, one command per read), the captcha's two commands far less.
//! 2. the apalis push (on the queue's own connection; task id = the request id, so a push
//!    that errors after Redis stored it is found by one exact lookup and not undone).
//!
//! The claim also returns the code it replaced (its wrong-guess counter and owner) with their
//! PTTLs, and the budget counters, at no extra round trip. If the push fails, [`release_send`]
//! (a third round trip, only then) gives back the flag and puts that previous code back with
//! the life it had left (or deletes the new code if there was none), each only if the key still
//! holds this request's value, and refunds every counter hit: a queue outage neither sends a
//! code nor wipes the one the user already has, and the user can simply retry.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use shared::config::RedisSettings;
use shared::domain::{ImageCodeId, Mobile, SmsCode};
use shared::keys;
use shared::redis_client::{RedisClient, Replay};

/// Rate-limit scope of the per-IP hourly limit (`rl:sms_ip:{ip}`).
pub const IP_SCOPE: &str = "sms_ip";
/// Rate-limit scope of the per-number-block limit (`rl:sms_prefix:{first 7 digits}`).
pub const PREFIX_SCOPE: &str = "sms_prefix";
/// Rate-limit scope of the per-subnet limit (`rl:sms_subnet:{/24 or /48}`).
pub const SUBNET_SCOPE: &str = "sms_subnet";
/// Rate-limit scope of the global SMS budget (`rl:sms_budget:minute|hour|day`).
pub const BUDGET_SCOPE: &str = "sms_budget";
/// Rate-limit scope of wrong captcha answers per client (`rl:captcha_fail:{ip}`).
pub const CAPTCHA_FAIL_SCOPE: &str = "captcha_fail";
/// Rate-limit scope of captcha issuance per client (`rl:captcha_issue:{ip}`).
pub const CAPTCHA_ISSUE_SCOPE: &str = "captcha_issue";
/// Window of the captcha issuance limit.
pub const CAPTCHA_ISSUE_WINDOW_SECS: u64 = 60;
/// Window of the per-mobile limit.
pub const MOBILE_WINDOW_SECS: u64 = 24 * 3600;
/// Window of the per-IP, per-prefix, per-subnet and captcha-failure limits.
pub const IP_WINDOW_SECS: u64 = 3600;
/// Digits of a mobile that name its number block.
pub const PREFIX_DIGITS: usize = 7;

/// A verify-codes connection to `url` (lazy: nothing connects yet); the service's comes from
/// its `RedisSettings`, tests reach a server of their own through this.
pub fn connect(url: &str, timeout: Duration) -> anyhow::Result<RedisClient> {
    RedisSettings {
        url: url.to_owned(),
        timeout,
    }
    .connection()
}

static ISSUE_IMAGE_CODE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS: rl captcha_issue, img; ARGV: issuance limit, its window (s), the text, its TTL (s)
local n = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return math.max(redis.call('PTTL', KEYS[1]), 1) end
redis.call('SETEX', KEYS[2], ARGV[4], ARGV[3])
return 0
",
    )
});

/// What [`issue_image_code`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issued {
    /// `img_{id}` holds the text for 300 s (a repeated id replaced the old text).
    Stored,
    /// The client is past `CAPTCHA_ISSUE_LIMIT_PER_IP_PER_MINUTE`: nothing stored; its window
    /// ends in this many milliseconds.
    Refused { window_left_ms: u64 },
}

/// Count one captcha for `client` (its limit key) under `rl:captcha_issue:{client}` (fixed
/// 60 s window; refused hits count too, as in `shared::rate_limit`) and, within `limit`,
/// `SETEX img_{id} 300 text`: one round trip, atomic.
pub async fn issue_image_code(
    conn: &RedisClient,
    id: &ImageCodeId,
    text: &str,
    client: &str,
    limit: u64,
) -> redis::RedisResult<Issued> {
    let window_left_ms: u64 = ISSUE_IMAGE_CODE
        .key(keys::rate_limit(CAPTCHA_ISSUE_SCOPE, client))
        .key(keys::image_code(id))
        .arg(limit)
        .arg(CAPTCHA_ISSUE_WINDOW_SECS)
        .arg(text)
        .arg(keys::IMAGE_CODE_TTL_SECS)
        // Resent after a dropped connection: the SETEX is idempotent and a repeat at worst
        // counts this captcha twice against the client's issuance limit.
        .invoke_async(&mut conn.replay(Replay::Recount))
        .await?;
    Ok(match window_left_ms {
        0 => Issued::Stored,
        window_left_ms => Issued::Refused { window_left_ms },
    })
}

static CLAIM_SEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS: img, rl captcha_fail, send_flag, sms code, attempts, owner, then one counter per
--       limit: first the client limits, then the budget windows
-- ARGV: the answer lower-cased, captcha failure limit, its window, request id, flag ttl, code,
--       code ttl, owner, number of client limits, then (limit, window) per counter
-- Statuses: 0 flag taken, 1 claimed, 2 client limit, 3 budget, 4 captcha limit, 5 no captcha,
--           6 wrong answer (each refusal returns the same shape, the unused fields empty).
local function refusal(status, a, b)
  return {status, a or 0, b or 0, false, -2, false, -2, false, {}}
end
-- The captcha first, consumed whether right or wrong.
local text = redis.call('GETDEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[2]) then
  return refusal(4, math.max(redis.call('TTL', KEYS[2]), 1))
end
if not text then return refusal(5) end
-- string.lower is ASCII only: the stored text is ASCII (ours and the original's captchas), so
-- this is Python's str.lower() on both sides, the answer having been lowered by the caller.
if string.lower(text) ~= ARGV[1] then
  local n = redis.call('INCR', KEYS[2])
  if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
  return refusal(6, n)
end
-- The resend guard: of any number of concurrent requests exactly one gets past it.
if not redis.call('SET', KEYS[3], ARGV[4], 'NX', 'EX', ARGV[5]) then return refusal(0) end
local first, clients = 7, tonumber(ARGV[9])
local function limit(i) return tonumber(ARGV[10 + 2 * (i - first)]) end
local function window(i) return ARGV[11 + 2 * (i - first)] end
local function is_client(i) return i < first + clients end
-- Count first, decide after, undo on a refusal (the script is atomic, so nobody sees the
-- undone counts): a send that every counter allows, the common case, costs one INCR per
-- counter, plus an EXPIRE when that INCR started its window. Who counts what: see the module
-- comment.
local counts, over, client_refused, refused = {}, {}, false, false
for i = first, #KEYS do
  local n = redis.call('INCR', KEYS[i])
  if n == 1 then redis.call('EXPIRE', KEYS[i], window(i)) end
  counts[#counts + 1] = n
  over[i] = n > limit(i)
  if over[i] then
    refused = true
    if is_client(i) then client_refused = true end
  end
end
if refused then
  local mask, wait = 0, 1
  for i = first, #KEYS do
    -- A refusing client limit keeps its count; every other counter is put back as it was
    -- (deleted if this INCR made it).
    if not (over[i] and is_client(i)) then
      redis.call(counts[i - first + 1] == 1 and 'DEL' or 'DECR', KEYS[i])
    end
    if over[i] and (is_client(i) or not client_refused) then
      local ttl = redis.call('TTL', KEYS[i])
      -- A counter without an expiry (never written so by this script) would refuse for good.
      if ttl < 0 then
        redis.call('EXPIRE', KEYS[i], window(i))
        ttl = tonumber(window(i))
      end
      mask = bit.bor(mask, bit.lshift(1, i - first))
      wait = math.max(wait, ttl)
    end
  end
  redis.call('DEL', KEYS[3])
  return refusal(client_refused and 2 or 3, wait, mask)
end
-- What the new code replaces, so that a failed queue push can put it back (release_send)
-- without another round trip on the success path. Without a code (a first send, or the last
-- one expired) its counter and owner are not needed: one PTTL instead of five reads.
local prev_code, prev_attempts, prev_attempts_pttl, prev_owner = false, false, -2, false
local prev_code_pttl = redis.call('PTTL', KEYS[4])
if prev_code_pttl ~= -2 then
  prev_code = redis.call('GET', KEYS[4])
  prev_attempts = redis.call('GET', KEYS[5])
  prev_attempts_pttl = redis.call('PTTL', KEYS[5])
  prev_owner = redis.call('GET', KEYS[6])
end
redis.call('SET', KEYS[4], ARGV[6], 'EX', ARGV[7])
redis.call('SET', KEYS[6], ARGV[8], 'EX', ARGV[7])
-- Also without a code: a counter left by an expired code must not carry over to this one.
redis.call('DEL', KEYS[5])
return {1, 0, 0, prev_code, prev_code_pttl, prev_attempts, prev_attempts_pttl, prev_owner, counts}
",
    )
});

/// The global SMS budget: sends by every replica together, per fixed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_minute: u64,
    pub per_hour: u64,
    pub per_day: u64,
}

/// The abuse limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    pub per_mobile_per_day: u64,
    pub per_ip_per_hour: u64,
    pub per_prefix_per_hour: u64,
    pub per_subnet_per_hour: u64,
    pub captcha_failures_per_ip_per_hour: u64,
    pub budget: Budget,
}

/// The documented defaults.
impl Default for SendLimits {
    fn default() -> Self {
        Self {
            per_mobile_per_day: 10,
            per_ip_per_hour: 20,
            per_prefix_per_hour: 50,
            per_subnet_per_hour: 200,
            captcha_failures_per_ip_per_hour: 30,
            budget: Budget {
                per_minute: 100,
                per_hour: 2000,
                per_day: 20_000,
            },
        }
    }
}

/// A client limit (429 when spent), in the order of the claim's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Mobile,
    Ip,
    Prefix,
    Subnet,
}

/// A window of the global budget (503 when spent), in the order of the claim's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetWindow {
    Minute,
    Hour,
    Day,
}

impl BudgetWindow {
    pub const ALL: [Self; 3] = [Self::Minute, Self::Hour, Self::Day];

    /// The `window` label of the budget metrics and the key's suffix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    pub fn secs(self) -> u64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => 24 * 3600,
        }
    }

    pub fn limit(self, budget: Budget) -> u64 {
        match self {
            Self::Minute => budget.per_minute,
            Self::Hour => budget.per_hour,
            Self::Day => budget.per_day,
        }
    }
}

/// One send about to be claimed.
#[derive(Debug)]
pub struct Claim<'a> {
    pub mobile: &'a Mobile,
    pub ip: Option<IpAddr>,
    /// The captcha the request answered: the claim consumes it, right or wrong.
    pub captcha: Captcha<'a>,
    pub code: &'a SmsCode,
    /// Stored as the flag's value, so only this request can give the flag back.
    pub request_id: uuid::Uuid,
}

/// A captcha id and the text the user typed for it.
#[derive(Debug, Clone, Copy)]
pub struct Captcha<'a> {
    pub id: &'a ImageCodeId,
    pub answer: &'a str,
}

const CLIENT_LIMITS: [LimitHit; 4] = [
    LimitHit::Mobile,
    LimitHit::Ip,
    LimitHit::Prefix,
    LimitHit::Subnet,
];

impl Claim<'_> {
    /// The four keys every claim and release touches before the counters.
    fn code_keys(&self) -> [String; 4] {
        [
            keys::send_flag(self.mobile),
            keys::sms_code(self.mobile),
            keys::sms_attempts(self.mobile),
            keys::sms_owner(self.mobile),
        ]
    }

    /// Every counter as (key, limit, window): the client limits in [`CLIENT_LIMITS`] order,
    /// then the budget in [`BudgetWindow::ALL`] order. An IPv6 client counts by its /64 (one
    /// subscriber holds a whole /64) and its /48, an IPv4-mapped address as the IPv4 it is.
    /// `client` is [`Claim::client`], computed once by the caller, which needs it too.
    fn counters(&self, limits: SendLimits, client: &str) -> Vec<(String, u64, u64)> {
        let mobile = self.mobile.as_str();
        let per_client = CLIENT_LIMITS.map(|hit| match hit {
            LimitHit::Mobile => (
                keys::rate_limit(keys::SMS_MOBILE_SCOPE, mobile),
                limits.per_mobile_per_day,
                MOBILE_WINDOW_SECS,
            ),
            LimitHit::Ip => (
                keys::rate_limit(IP_SCOPE, client),
                limits.per_ip_per_hour,
                IP_WINDOW_SECS,
            ),
            LimitHit::Prefix => (
                keys::rate_limit(PREFIX_SCOPE, &mobile[..PREFIX_DIGITS]),
                limits.per_prefix_per_hour,
                IP_WINDOW_SECS,
            ),
            LimitHit::Subnet => (
                keys::rate_limit(
                    SUBNET_SCOPE,
                    &self.ip.map_or_else(
                        || shared::client_ip::UNKNOWN_CLIENT.to_owned(),
                        shared::client_ip::subnet_key,
                    ),
                ),
                limits.per_subnet_per_hour,
                IP_WINDOW_SECS,
            ),
        });
        let budget = BudgetWindow::ALL.map(|w| {
            (
                keys::rate_limit(BUDGET_SCOPE, w.name()),
                w.limit(limits.budget),
                w.secs(),
            )
        });
        per_client.into_iter().chain(budget).collect()
    }

    /// The client's limit key: its captcha-failure and per-IP counters' name, and the code
    /// owner's value (as users-svc computes it).
    fn client(&self) -> String {
        shared::client_ip::limit_key_of(self.ip)
    }
}

/// The still-valid code a claim replaced, and its wrong-guess counter and owner, as they were.
#[derive(Clone, PartialEq, Eq)]
pub struct Previous {
    pub code: String,
    /// Its remaining life when the claim ran; `None`: the key had no TTL.
    pub ttl: Option<Duration>,
    /// `sms_attempts_{mobile}` then (0 if absent), so a restored code gets no fresh guesses.
    pub attempts: u64,
    /// The counter's remaining life; `None`: absent or without TTL.
    pub attempts_ttl: Option<Duration>,
    /// `sms_owner_{mobile}` then; `None`: absent (a code stored by the original).
    pub owner: Option<String>,
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

/// What the claim decided; the captcha is consumed in every case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The client is past its wrong-answer limit: refused without looking at the answer.
    CaptchaLimited { retry_after: u64 },
    /// No captcha under the id (expired, used, never issued).
    NoCaptcha,
    /// The answer does not match; counted, this many wrong answers in the window now.
    WrongAnswer { failures: u64 },
    /// The flag is ours and the code is stored; `previous` is the code it replaced, if any;
    /// `budget_used`: the budget counters after this send, in [`BudgetWindow::ALL`] order.
    Claimed {
        previous: Option<Previous>,
        budget_used: [u64; 3],
    },
    /// Another request holds the flag (sent within 60 s, or a concurrent winner).
    FlagTaken,
    /// Over a client limit (the first of those that refused); nothing stored, flag given back.
    Limited { hit: LimitHit, retry_after: u64 },
    /// Within every client limit but the global budget is spent (the longest window that
    /// refused); nothing stored or counted, the flag given back.
    BudgetSpent {
        window: BudgetWindow,
        retry_after: u64,
    },
}

/// `CLAIM_SEND`'s answer: status, retry-after (or wrong answers), refusal mask, then the previous code, its PTTL,
/// its wrong guesses, their PTTL, its owner, and the counters after this request.
type ClaimReply = (
    i64,
    u64,
    u32,
    Option<String>,
    i64,
    Option<String>,
    i64,
    Option<String>,
    Vec<u64>,
);

/// Take the captcha (count a wrong answer), claim the send flag, count the limits and the
/// budget, store the code: atomically, one round trip.
pub async fn claim_send(
    conn: &RedisClient,
    claim: &Claim<'_>,
    limits: SendLimits,
) -> redis::RedisResult<ClaimOutcome> {
    let client = claim.client();
    let mut script = CLAIM_SEND.prepare_invoke();
    script
        .key(keys::image_code(claim.captcha.id))
        .key(keys::rate_limit(CAPTCHA_FAIL_SCOPE, &client));
    for key in claim.code_keys() {
        script.key(key);
    }
    script
        .arg(claim.captcha.answer.to_lowercase())
        .arg(limits.captcha_failures_per_ip_per_hour)
        .arg(IP_WINDOW_SECS)
        .arg(claim.request_id.to_string())
        .arg(keys::SEND_FLAG_TTL_SECS)
        .arg(claim.code.as_str())
        .arg(keys::SMS_CODE_TTL_SECS)
        .arg(&client)
        .arg(CLIENT_LIMITS.len());
    for (key, limit, window) in claim.counters(limits, &client) {
        script.key(key).arg(limit).arg(window);
    }
    // Not resent: a second run finds no captcha (GETDEL), or its own flag (SET NX), and
    // counts again; the caller releases what a lost run may have taken.
    let reply: ClaimReply = script.invoke_async(&mut conn.replay(Replay::Never)).await?;
    Ok(claim_outcome(reply))
}

/// What `CLAIM_SEND`'s answer means.
fn claim_outcome(reply: ClaimReply) -> ClaimOutcome {
    let (status, wait, mask, prev_code, prev_pttl, prev_attempts, attempts_pttl, owner, counts) =
        reply;
    match status {
        1 => ClaimOutcome::Claimed {
            previous: prev_code.map(|code| Previous {
                code,
                ttl: ttl(prev_pttl),
                // Written only by INCR: a number; anything else counts as no guesses.
                attempts: prev_attempts
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_default(),
                attempts_ttl: ttl(attempts_pttl),
                owner,
            }),
            budget_used: std::array::from_fn(|i| {
                counts.get(CLIENT_LIMITS.len() + i).copied().unwrap_or(0)
            }),
        },
        4 => ClaimOutcome::CaptchaLimited { retry_after: wait },
        5 => ClaimOutcome::NoCaptcha,
        6 => ClaimOutcome::WrongAnswer { failures: wait },
        2 => ClaimOutcome::Limited {
            // The first refusing limit: bit i is CLIENT_LIMITS[i].
            hit: CLIENT_LIMITS[(mask.trailing_zeros() as usize).min(CLIENT_LIMITS.len() - 1)],
            retry_after: wait,
        },
        3 => ClaimOutcome::BudgetSpent {
            // The longest refusing window: bits 4.. are BudgetWindow::ALL.
            window: BudgetWindow::ALL[(31 - mask.leading_zeros() as usize)
                .saturating_sub(CLIENT_LIMITS.len())
                .min(2)],
            retry_after: wait,
        },
        _ => ClaimOutcome::FlagTaken,
    }
}

/// PTTL: -2 no key, -1 no expiry, else milliseconds left.
fn ttl(pttl: i64) -> Option<Duration> {
    u64::try_from(pttl).ok().map(Duration::from_millis)
}

static RELEASE_SEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
-- KEYS: send_flag, sms code, attempts, owner, then the claim's counters
-- ARGV: request id, code, refund (1/0), previous code, its ms left (0: none or expired),
--       previous wrong guesses, their ms left (0: take the code's), previous owner ('': none)
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
-- Only while the key still holds this request's code: a later send's code is left alone.
if redis.call('GET', KEYS[2]) == ARGV[2] then
  local left = tonumber(ARGV[5])
  if left > 0 then
    -- The code the user may already have received stays valid, with the life it had left.
    redis.call('SET', KEYS[2], ARGV[4], 'PX', left)
    if ARGV[8] ~= '' then
      redis.call('SET', KEYS[4], ARGV[8], 'PX', left)
    else
      redis.call('DEL', KEYS[4])
    end
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
    redis.call('DEL', KEYS[2], KEYS[4])
  end
end
if ARGV[3] == '1' then
  for i = 5, #KEYS do
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
/// request's value. `refund` also takes back every counter hit, budget included (only when the
/// claim is known to have run).
pub async fn release_send(
    conn: &RedisClient,
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
    let (code, code_left, attempts, attempts_left, owner) =
        previous.map_or((String::new(), 0, 0, 0, String::new()), |p| {
            (
                p.code.clone(),
                left(p.ttl),
                p.attempts,
                p.attempts_ttl.map_or(0, |t| left(Some(t))),
                p.owner.clone().unwrap_or_default(),
            )
        });
    let mut script = RELEASE_SEND.prepare_invoke();
    for key in claim.code_keys() {
        script.key(key);
    }
    // The limits only name the keys here; any values give the same ones.
    for (key, _, _) in claim.counters(SendLimits::default(), &claim.client()) {
        script.key(key);
    }
    script
        .arg(claim.request_id.to_string())
        .arg(claim.code.as_str())
        .arg(if refund { "1" } else { "0" })
        .arg(code)
        .arg(code_left)
        .arg(attempts)
        .arg(attempts_left)
        .arg(owner)
        // Resent only without a refund: the flag and code steps compare with this request's
        // values first, so a second run finds nothing of ours left and changes nothing; the
        // refund's DECRs would be counted twice.
        .invoke_async::<i64>(&mut conn.replay(if refund { Replay::Never } else { Replay::Safe }))
        .await
        .map(drop)
}
