//! Checking the SMS code a registration presents against `sms_{mobile}` in Redis.
//!
//! The whole check is ONE Lua script ([`CHECK`]), and Redis runs scripts one at a time: read
//! the code, compare, and on a wrong guess count it and, at the [`MAX_ATTEMPTS`]th wrong guess
//! of the code's owner, delete the code. No guess can be compared between another guess's
//! compare and its count, so a code gets a bounded number of comparisons however many requests
//! are in flight: of 1,000 parallel guesses, five are compared and the rest find no code
//! ("无效的短信验证码"). (The original allows unlimited guesses; an earlier version here
//! compared in Rust and counted afterwards, which gave N simultaneous requests 4 + N
//! comparisons.)
//!
//! Code burning (threat model in the README): verifications-svc stores who asked for the code
//! (`sms_owner_{mobile}`, the requester's `client_ip::limit_key`). Wrong guesses from the owner
//! count in `sms_attempts_{mobile}` and the fifth deletes the code; wrong guesses from anyone
//! else count in `sms_stranger_attempts_{mobile}`, at most [`MAX_STRANGER_ATTEMPTS`], never
//! delete the code, and past that strangers are not compared at all. A code without an owner
//! key (written by the Django original) has the old rule for everyone. Every wrong guess also
//! counts per client across mobiles (`rl:register_wrong:{ip}`, 1 h): past
//! `REGISTER_WRONG_CODES_PER_IP_PER_HOUR` the answer is 429 without a comparison.
//!
//! The compare runs inside the script in constant time: it walks every byte of the stored code
//! and ORs the XOR of each pair, with no early exit, so the time says nothing about how many
//! leading digits were right; a guess of another length is wrong (its length is the attacker's
//! own input, and the stored code's length, 6, is no secret). A right code is not counted and
//! does not delete anything, so concurrent right codes (double-submits) all pass and meet the
//! unique index, which answers "mobile taken" to all but one; the winner deletes the code after
//! its INSERT ([`SmsCheck::consume`]).

use std::net::IpAddr;
use std::sync::LazyLock;

use shared::domain::Mobile;
use shared::http::ApiError;
use shared::keys;
use shared::redis_client::{RedisClient, Replay};

/// Wrong guesses allowed per code from the client that asked for it.
pub const MAX_ATTEMPTS: u64 = 5;
/// Wrong guesses allowed per mobile (300 s from the first) from every other client together.
pub const MAX_STRANGER_ATTEMPTS: u64 = 3;
/// Rate-limit scope of wrong codes per client (`rl:register_wrong:{ip}`).
pub const WRONG_CODES_SCOPE: &str = "register_wrong";
/// Window of that limit.
pub const WRONG_CODES_WINDOW_SECS: u64 = 3600;

/// `无效的短信验证码`: no code stored, expired, used, or deleted after too many wrong tries.
pub const NO_VALID_CODE: &str = "无效的短信验证码";
/// `短信验证码错误`.
pub const WRONG_CODE: &str = "短信验证码错误";

/// The atomic check. KEYS: the code, the owner's and the strangers' attempt counters, the
/// owner, the client's wrong-code counter; ARGV: the guess, the counters' TTL,
/// [`MAX_ATTEMPTS`], [`MAX_STRANGER_ATTEMPTS`], the client's key, the per-client limit and its
/// window. Returns `{verdict, n}`: `limited` (n = seconds left), `invalid` (no code, or a
/// stranger past the strangers' budget), `wrong` (counted; n = that counter) or `ok`. Counters
/// get their TTL in the same call, so a crash can never leave one that lives for ever. `bit` is
/// the LuaBitOp library every Redis ≥ 2.8.18 embeds.
static CHECK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local function count(key, ttl)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ttl) end
  return n
end
if tonumber(redis.call('GET', KEYS[5]) or '0') >= tonumber(ARGV[6]) then
  return {'limited', math.max(redis.call('TTL', KEYS[5]), 1)}
end
local code = redis.call('GET', KEYS[1])
if not code then return {'invalid', 0} end
local owner = redis.call('GET', KEYS[4])
local stranger = owner and owner ~= ARGV[5]
if stranger and tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[4]) then
  return {'invalid', 0}
end
local given = ARGV[1]
local diff = 0
if #code ~= #given then diff = 1 end
for i = 1, #code do
  diff = bit.bor(diff, bit.bxor(string.byte(code, i), string.byte(given, i) or 256))
end
if diff == 0 then return {'ok', 0} end
count(KEYS[5], ARGV[7])
if stranger then return {'wrong', count(KEYS[3], ARGV[2])} end
local n = count(KEYS[2], ARGV[2])
if n >= tonumber(ARGV[3]) then redis.call('DEL', KEYS[1]) end
return {'wrong', n}
",
    )
});

/// One registration's guess at a mobile's code.
#[derive(Debug, Clone, Copy)]
pub struct Guess<'a> {
    pub mobile: &'a Mobile,
    pub code: &'a str,
    /// The client, to tell the code's owner from strangers and to count its wrong codes.
    pub client: Option<IpAddr>,
    /// `REGISTER_WRONG_CODES_PER_IP_PER_HOUR`.
    pub wrong_codes_per_ip_per_hour: u64,
}

/// A code that matched.
#[derive(Debug)]
pub struct SmsCheck {
    mobile: Mobile,
}

/// Why a presented code was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// No code stored, expired, used, or deleted after too many wrong tries.
    #[error("no valid sms code")]
    NoValidCode,
    /// A wrong guess (counted).
    #[error("wrong sms code")]
    Wrong,
    /// The client is past `REGISTER_WRONG_CODES_PER_IP_PER_HOUR`: not compared.
    #[error("too many wrong sms codes from this client")]
    Limited { retry_after: u64 },
    /// Redis could not run the check.
    #[error("sms code check in Redis")]
    Unavailable(#[source] anyhow::Error),
    /// The script answered something it never answers: a bug.
    #[error("the sms code script answered {0:?}")]
    Unexpected(String),
}

impl CodeError {
    /// The label a refusal is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoValidCode => "sms_code_invalid",
            Self::Wrong => "sms_code_wrong",
            Self::Limited { .. } => "sms_code_limit",
            Self::Unavailable(_) => "unavailable",
            Self::Unexpected(_) => "error",
        }
    }
}

impl From<CodeError> for ApiError {
    fn from(e: CodeError) -> Self {
        match e {
            CodeError::NoValidCode => Self::non_field(NO_VALID_CODE),
            CodeError::Wrong => Self::non_field(WRONG_CODE),
            CodeError::Limited { retry_after } => Self::Throttled { retry_after },
            e @ CodeError::Unavailable(_) => Self::unavailable(e),
            e @ CodeError::Unexpected(_) => Self::Unexpected(e.into()),
        }
    }
}

fn unavailable(e: redis::RedisError) -> CodeError {
    CodeError::Unavailable(e.into())
}

/// Check the guess against the stored code: `Ok` when it matches.
pub async fn check(redis: &RedisClient, guess: &Guess<'_>) -> Result<SmsCheck, CodeError> {
    let client = shared::client_ip::limit_key_of(guess.client);
    let (verdict, n): (String, u64) = CHECK
        .key(keys::sms_code(guess.mobile))
        .key(keys::sms_attempts(guess.mobile))
        .key(keys::sms_stranger_attempts(guess.mobile))
        .key(keys::sms_owner(guess.mobile))
        .key(keys::rate_limit(WRONG_CODES_SCOPE, &client))
        .arg(guess.code)
        .arg(keys::SMS_CODE_TTL_SECS)
        .arg(MAX_ATTEMPTS)
        .arg(MAX_STRANGER_ATTEMPTS)
        .arg(&client)
        .arg(guess.wrong_codes_per_ip_per_hour)
        .arg(WRONG_CODES_WINDOW_SECS)
        // Not resent: a wrong guess is counted (INCR), a second run would count it twice.
        .invoke_async(&mut redis.replay(Replay::Never))
        .await
        .map_err(unavailable)?;
    match verdict.as_str() {
        "ok" => Ok(SmsCheck {
            mobile: guess.mobile.clone(),
        }),
        "limited" => Err(CodeError::Limited { retry_after: n }),
        "invalid" => Err(CodeError::NoValidCode),
        "wrong" => {
            if n >= MAX_ATTEMPTS {
                tracing::info!(mobile = %guess.mobile, wrong = n, "sms code deleted after too many wrong guesses");
            }
            Err(CodeError::Wrong)
        }
        other => Err(CodeError::Unexpected(other.to_owned())),
    }
}

impl SmsCheck {
    /// The registration succeeded: the code is single use, and its counters and owner go with
    /// it. Best effort: the account exists and the mobile is now taken, so a leftover code
    /// cannot register anything, and it expires within 300 s.
    pub async fn consume(self, redis: &RedisClient) {
        let result = redis::cmd("DEL")
            .arg(keys::sms_code(&self.mobile))
            .arg(keys::sms_attempts(&self.mobile))
            .arg(keys::sms_stranger_attempts(&self.mobile))
            .arg(keys::sms_owner(&self.mobile))
            // Safe to resend: deleting twice leaves the same state.
            .query_async::<()>(&mut redis.replay(Replay::Safe))
            .await;
        if let Err(e) = result {
            tracing::warn!(mobile = %self.mobile, error = %e, "could not delete a used sms code");
        }
    }
}
