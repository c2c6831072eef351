//! Checking the SMS code a registration presents against `sms_{mobile}` in Redis.
//!
//! The stored code is read with one GET and compared in constant time (`subtle`), so response
//! timing says nothing about how many leading digits were right. A wrong guess increments
//! `sms_attempts_{mobile}` (TTL 300 s, reset by verifications-svc when it sends a new code); the
//! [`MAX_ATTEMPTS`]th wrong guess deletes the code in the same Lua call, after which even the
//! right code gets "no valid code" (the original allows unlimited guesses).
//!
//! Limit of the limit: guesses already in flight when the fifth wrong one lands have read the
//! code and are still compared, so a client firing N requests at the same instant gets at most
//! 4 + N comparisons per code. Reserving an attempt before comparing would close that, but would
//! also refuse a burst of concurrent *right* codes (double-submits), which must instead reach the
//! unique index and get the "mobile taken" answer. The per-mobile and per-IP send limits of
//! verifications-svc bound the codes an attacker can get.

use std::sync::LazyLock;

use deadpool_redis::Pool;
use shared::domain::Mobile;
use shared::http::ApiError;
use shared::keys;
use subtle::ConstantTimeEq;

/// Wrong guesses allowed per code.
pub const MAX_ATTEMPTS: u64 = 5;

/// `无效的短信验证码`: no code stored, expired, used, or deleted after too many wrong tries.
pub const NO_VALID_CODE: &str = "无效的短信验证码";
/// `短信验证码错误`.
pub const WRONG_CODE: &str = "短信验证码错误";

/// Count a wrong guess; the MAX_ATTEMPTS-th deletes the code. The counter gets its TTL in the
/// same call, so a crash can never leave a counter that lives for ever.
static WRONG_GUESS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
if n >= tonumber(ARGV[2]) then redis.call('DEL', KEYS[1]) end
return n
",
    )
});

/// A code that matched.
#[derive(Debug)]
pub struct SmsCheck {
    mobile: Mobile,
}

fn unavailable(e: redis::RedisError) -> ApiError {
    ApiError::unavailable(anyhow::Error::new(e).context("sms code check in Redis"))
}

async fn connection(redis: &Pool) -> Result<deadpool_redis::Connection, ApiError> {
    redis
        .get()
        .await
        .map_err(|e| ApiError::unavailable(anyhow::anyhow!("redis connection: {e}")))
}

/// Check `given` against the stored code: `Ok` when it matches, else the 400 to send.
pub async fn check(redis: &Pool, mobile: &Mobile, given: &str) -> Result<SmsCheck, ApiError> {
    let mut conn = connection(redis).await?;
    let stored: Option<String> = redis::cmd("GET")
        .arg(keys::sms_code(mobile))
        .query_async(&mut conn)
        .await
        .map_err(unavailable)?;
    let Some(code) = stored else {
        return Err(ApiError::non_field(NO_VALID_CODE));
    };
    // `ct_eq` on slices of different lengths is false at once; the length is no secret (6).
    if bool::from(code.as_bytes().ct_eq(given.as_bytes())) {
        return Ok(SmsCheck {
            mobile: mobile.clone(),
        });
    }
    let wrong: u64 = WRONG_GUESS
        .key(keys::sms_code(mobile))
        .key(keys::sms_attempts(mobile))
        .arg(keys::SMS_CODE_TTL_SECS)
        .arg(MAX_ATTEMPTS)
        .invoke_async(&mut conn)
        .await
        .map_err(unavailable)?;
    if wrong >= MAX_ATTEMPTS {
        tracing::info!(mobile = %mobile, wrong, "sms code deleted after too many wrong guesses");
    }
    Err(ApiError::non_field(WRONG_CODE))
}

impl SmsCheck {
    /// The registration succeeded: the code is single use, and its counter goes with it. Best
    /// effort: the account exists and the mobile is now taken, so a leftover code cannot
    /// register anything, and it expires within 300 s.
    pub async fn consume(self, redis: &Pool) {
        let result = async {
            let mut conn = connection(redis)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            redis::cmd("DEL")
                .arg(keys::sms_code(&self.mobile))
                .arg(keys::sms_attempts(&self.mobile))
                .query_async::<()>(&mut conn)
                .await
                .map_err(anyhow::Error::new)
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(mobile = %self.mobile, error = %format!("{e:#}"), "could not delete a used sms code");
        }
    }
}
