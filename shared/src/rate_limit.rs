//! Fixed-window rate limits in Redis under `rl:{scope}:{key}`, one round trip per check.
//!
//! A window starts at the first hit and lasts `window_secs`; the counter and its expiry are set
//! atomically by a Lua script, so a crash can never leave a counter without a TTL (which would
//! lock a client out for good). Works on any Redis from 2.6 on, like the original's.

use std::sync::LazyLock;

use crate::keys;

static HIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
",
    )
});

/// A limit: at most `limit` hits per `window_secs` for each key of `scope`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub scope: &'static str,
    pub limit: u64,
    pub window_secs: u64,
}

/// The result of counting one hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit; retry after this many seconds (at least 1).
    Refused {
        retry_after: u64,
    },
}

impl Limit {
    /// Count a hit for `key` and decide; refused hits count too, so hammering does not help.
    /// Works on any async connection, e.g. `crate::redis_client::RedisClient`, which should
    /// send it with `Replay::Recount`: resent after a dropped connection, at worst counting this
    /// one hit twice.
    pub async fn hit_on<C>(&self, conn: &mut C, key: &str) -> redis::RedisResult<Decision>
    where
        C: redis::aio::ConnectionLike + Send,
    {
        let (count, ttl): (u64, i64) = HIT
            .key(keys::rate_limit(self.scope, key))
            .arg(self.window_secs)
            .invoke_async(conn)
            .await?;
        Ok(if count > self.limit {
            Decision::Refused {
                retry_after: ttl.max(1).unsigned_abs(),
            }
        } else {
            Decision::Allowed
        })
    }
}
