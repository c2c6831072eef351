//! Checking the SMS code a registration presents against `sms_{mobile}` in Redis.
//!
//! The whole check is ONE Lua script ([`CHECK`]), and Redis runs scripts one at a time: read
//! the code, compare, and on a wrong guess increment `sms_attempts_{mobile}` (TTL 300 s, reset
//! by verifications-svc when it sends a new code) and, at the [`MAX_ATTEMPTS`]th wrong guess,
//! delete the code. No guess can be compared between another guess's compare and its count, so
//! a code gets at most [`MAX_ATTEMPTS`] comparisons however many requests are in flight: of
//! 1,000 parallel guesses, five are compared and the rest find no code ("无效的短信验证码").
//! (The original allows unlimited guesses; an earlier version here compared in Rust and counted
//! afterwards, which gave N simultaneous requests 4 + N comparisons.)
//!
//! The compare runs inside the script in constant time: it walks every byte of the stored code
//! and ORs the XOR of each pair, with no early exit, so the time says nothing about how many
//! leading digits were right; a guess of another length is wrong (its length is the attacker's
//! own input, and the stored code's length, 6, is no secret). A right code is not counted and
//! does not delete anything, so concurrent right codes (double-submits) all pass and meet the
//! unique index, which answers "mobile taken" to all but one; the winner deletes the code after
//! its INSERT ([`SmsCheck::consume`]).

use std::sync::LazyLock;

use shared::domain::Mobile;
use shared::http::ApiError;
use shared::keys;
use shared::redis_client::{RedisClient, Replay};

/// Wrong guesses allowed per code.
pub const MAX_ATTEMPTS: u64 = 5;

/// `无效的短信验证码`: no code stored, expired, used, or deleted after too many wrong tries.
pub const NO_VALID_CODE: &str = "无效的短信验证码";
/// `短信验证码错误`.
pub const WRONG_CODE: &str = "短信验证码错误";

/// The atomic check. KEYS: the code, its attempt counter; ARGV: the guess, the counter's TTL,
/// [`MAX_ATTEMPTS`]. Returns `{verdict, wrong guesses so far}` with verdict `ok`, `invalid`
/// (no code) or `wrong` (counted; the code is deleted once the count reaches the maximum).
/// The counter gets its TTL in the same call, so a crash can never leave one that lives for
/// ever. `bit` is the LuaBitOp library every Redis ≥ 2.8.18 embeds.
static CHECK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local code = redis.call('GET', KEYS[1])
if not code then return {'invalid', 0} end
local given = ARGV[1]
local diff = 0
if #code ~= #given then diff = 1 end
for i = 1, #code do
  diff = bit.bor(diff, bit.bxor(string.byte(code, i), string.byte(given, i) or 256))
end
if diff == 0 then return {'ok', 0} end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
if n >= tonumber(ARGV[3]) then redis.call('DEL', KEYS[1]) end
return {'wrong', n}
",
    )
});

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
            e @ CodeError::Unavailable(_) => Self::unavailable(e),
            e @ CodeError::Unexpected(_) => Self::Unexpected(e.into()),
        }
    }
}

fn unavailable(e: redis::RedisError) -> CodeError {
    CodeError::Unavailable(e.into())
}

/// Check `given` against the stored code: `Ok` when it matches.
pub async fn check(
    redis: &RedisClient,
    mobile: &Mobile,
    given: &str,
) -> Result<SmsCheck, CodeError> {
    let (verdict, wrong): (String, u64) = CHECK
        .key(keys::sms_code(mobile))
        .key(keys::sms_attempts(mobile))
        .arg(given)
        .arg(keys::SMS_CODE_TTL_SECS)
        .arg(MAX_ATTEMPTS)
        // Not resent: a wrong guess is counted (INCR), a second run would count it twice.
        .invoke_async(&mut redis.replay(Replay::Never))
        .await
        .map_err(unavailable)?;
    match verdict.as_str() {
        "ok" => Ok(SmsCheck {
            mobile: mobile.clone(),
        }),
        "invalid" => Err(CodeError::NoValidCode),
        "wrong" => {
            if wrong >= MAX_ATTEMPTS {
                tracing::info!(mobile = %mobile, wrong, "sms code deleted after too many wrong guesses");
            }
            Err(CodeError::Wrong)
        }
        other => Err(CodeError::Unexpected(other.to_owned())),
    }
}

impl SmsCheck {
    /// The registration succeeded: the code is single use, and its counter goes with it. Best
    /// effort: the account exists and the mobile is now taken, so a leftover code cannot
    /// register anything, and it expires within 300 s.
    pub async fn consume(self, redis: &RedisClient) {
        let result = redis::cmd("DEL")
            .arg(keys::sms_code(&self.mobile))
            .arg(keys::sms_attempts(&self.mobile))
            // Safe to resend: deleting twice leaves the same state.
            .query_async::<()>(&mut redis.replay(Replay::Safe))
            .await;
        if let Err(e) = result {
            tracing::warn!(mobile = %self.mobile, error = %e, "could not delete a used sms code");
        }
    }
}
