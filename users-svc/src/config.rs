//! Settings of users-svc, each read from its environment variable with a default that
//! works for local development (`deploy/dev up`).

use shared::config::{ConfigError, Env, Listen};

/// Everything users-svc reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`, `PORT` (default 8002), `HTTP_WORKERS`.
    pub listen: Listen,
    /// `REDIS_URL`: the verify-codes database, default `redis://127.0.0.1:6379/2`.
    pub redis_url: String,
    /// `REDIS_POOL_SIZE`, default 32 connections.
    pub redis_pool_size: usize,
    /// `REDIS_TIMEOUT_MS`, default 1000: wait, connect and recycle timeout of the pool, so a
    /// request fails fast with 503 when Redis is down instead of hanging.
    pub redis_timeout: std::time::Duration,
}

impl Config {
    /// Read the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(Env::from_process())
    }

    /// Read the given environment snapshot; every bad value is reported.
    pub fn from(mut env: Env) -> Result<Self, ConfigError> {
        let config = Self {
            listen: Listen::from_env(&mut env, 8002),
            redis_url: env.url(
                "REDIS_URL",
                "redis://127.0.0.1:6379/2",
                &["redis://", "rediss://"],
            ),
            redis_pool_size: env.int_in("REDIS_POOL_SIZE", 32, 1, 1024),
            redis_timeout: env.millis("REDIS_TIMEOUT_MS", 1000),
        };
        env.finish()?;
        Ok(config)
    }
}
