//! Availability checks (`/usernames/{u}/count/`, `/mobiles/{m}/count/`): one indexed
//! `COUNT(*)` each, behind a per-client-IP limit so nobody can enumerate the accounts in bulk.
//!
//! The limiter talks to Redis over one shared multiplexed connection (`ConnectionManager`, which
//! reconnects by itself) rather than the pool: a pool checkout costs a PING round trip, a third
//! of this endpoint's round trips.
//!
//! When Redis (the limiter) is down the answer is 503, not an unlimited count: failing open would
//! switch the enumeration guard off exactly when nobody is watching it.

use std::net::IpAddr;

use ipnet::IpNet;
use redis::aio::ConnectionManager;
use shared::domain::{Mobile, Username};
use shared::http::ApiError;
use shared::rate_limit::{Decision, Limit};

use crate::db::{Db, DbError, users};

/// What the count endpoints share.
#[derive(Debug)]
pub struct Availability {
    pub db: Db,
    /// The verify-codes Redis, where the limiter's counters live.
    pub redis: ConnectionManager,
    /// `COUNT_LIMIT_PER_IP_PER_MINUTE`, one window shared by both endpoints.
    pub limit: Limit,
    /// Peers whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
}

impl Availability {
    /// The limiter's scope: keys are `rl:count_ip:{ip}`.
    pub const SCOPE: &'static str = "count_ip";

    /// `COUNT_LIMIT_PER_IP_PER_MINUTE` hits a minute.
    pub fn limit(per_minute: u64) -> Limit {
        Limit {
            scope: Self::SCOPE,
            limit: per_minute,
            window_secs: 60,
        }
    }

    /// How many accounts use `name` (0 or 1, case-insensitively).
    ///
    /// A name the column cannot store (a 4-byte character such as U+20000 against an adopted
    /// Django table in `utf8`, i.e. utf8mb3) makes MariaDB reject the comparison; such a name
    /// cannot be in any row, so it counts 0 (and can never be registered, see registration).
    pub async fn username_count(
        &self,
        client: Option<IpAddr>,
        name: &Username,
    ) -> Result<i64, ApiError> {
        self.throttle(client).await?;
        match self
            .db
            .run(async |c| users::count_username(c, name).await)
            .await
        {
            Ok(n) => Ok(n),
            Err(DbError::Unstorable { cause, .. }) => {
                tracing::debug!(error = %cause, "a username the column cannot store counts 0");
                Ok(0)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// How many accounts use `mobile` (0 or 1).
    pub async fn mobile_count(
        &self,
        client: Option<IpAddr>,
        mobile: &Mobile,
    ) -> Result<i64, ApiError> {
        self.throttle(client).await?;
        Ok(self
            .db
            .run(async |c| users::count_mobile(c, mobile).await)
            .await?)
    }

    async fn throttle(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        let key = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let mut conn = self.redis.clone();
        match self.limit.hit_on(&mut conn, &key).await {
            Ok(Decision::Allowed) => Ok(()),
            Ok(Decision::Refused { retry_after }) => Err(ApiError::Throttled { retry_after }),
            Err(e) => Err(ApiError::unavailable(
                anyhow::Error::new(e).context("count rate limit in Redis"),
            )),
        }
    }
}
