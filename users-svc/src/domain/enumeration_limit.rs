//! The per-client-IP limit against account enumeration (`COUNT_LIMIT_PER_IP_PER_MINUTE`).
//!
//! Every answer that tells whether an account exists spends from the same budget: both count
//! endpoints and every registration attempt that looks the username or mobile up (its
//! "taken" errors tell exactly what a count does). Without the registration side an attacker
//! would simply enumerate through `POST /users/` instead of the limited GETs.
//!
//! The limiter talks to Redis over the HTTP worker's one multiplexed connection
//! (`shared::redis_client::RedisClient`), with no checkout round trip. A hit whose connection
//! Redis dropped under it (a restart) is sent again on a fresh one (`Replay::Recount`): if the
//! first did count, the client is charged one lookup twice, one of its per-minute budget; the
//! other choice was a 503 for a user who did nothing wrong.
//!
//! When Redis (the limiter) is down the answer is 503, not an unlimited lookup: failing open
//! would switch the enumeration guard off exactly when nobody is watching it.

use std::net::IpAddr;

use shared::http::ApiError;
use shared::rate_limit::{Decision, Limit};
use shared::redis_client::{RedisClient, Replay};

/// Why a lookup was not allowed.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// Over the limit: 429, retry after this many seconds.
    #[error("over the enumeration limit for {retry_after} s")]
    Throttled { retry_after: u64 },
    /// Redis could not count the hit: 503 (failing open would switch the guard off).
    #[error("enumeration rate limit in Redis")]
    Unavailable(#[source] redis::RedisError),
}

impl LimitError {
    /// The label a refusal is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Throttled { retry_after } => Self::Throttled { retry_after },
            e @ LimitError::Unavailable(_) => Self::unavailable(e),
        }
    }
}

/// One HTTP worker's handle on the limiter; clones share the connection.
#[derive(Debug, Clone)]
pub struct EnumerationLimit {
    /// The verify-codes Redis, where the counters live.
    pub redis: RedisClient,
    /// `COUNT_LIMIT_PER_IP_PER_MINUTE`, one window for the counts and registration together.
    pub limit: Limit,
}

impl EnumerationLimit {
    /// The limiter's scope: keys are `rl:count_ip:{key}`, the key from
    /// `shared::client_ip::limit_key` (an IPv6 client by its /64, which one subscriber usually
    /// holds whole; an IPv4-mapped address as the IPv4). The scope's name predates registration
    /// sharing it; kept so counters survive a rolling deploy.
    pub const SCOPE: &'static str = "count_ip";

    pub fn new(redis: RedisClient, per_minute: u64) -> Self {
        Self {
            redis,
            limit: Limit {
                scope: Self::SCOPE,
                limit: per_minute,
                window_secs: 60,
            },
        }
    }

    /// Count one lookup for `client` (under its limit key, so the addresses of one IPv6 /64
    /// share one budget): `Ok` within the limit, 429 with `Retry-After` over it,
    /// 503 when Redis cannot count.
    pub async fn hit(&self, client: Option<IpAddr>) -> Result<(), LimitError> {
        let key = shared::client_ip::limit_key_of(client);
        let mut conn = self.redis.replay(Replay::Recount);
        match self.limit.hit_on(&mut conn, &key).await {
            Ok(Decision::Allowed) => Ok(()),
            Ok(Decision::Refused { retry_after }) => Err(LimitError::Throttled { retry_after }),
            Err(e) => Err(LimitError::Unavailable(e)),
        }
    }
}
