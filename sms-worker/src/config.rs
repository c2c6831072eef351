//! Settings of sms-worker, each read from its environment variable with a default that
//! works for local development (`deploy/dev up`).

use shared::config::{ConfigError, Env, Listen};

/// Everything sms-worker reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`, `PORT` (default 8003): the health and metrics port.
    pub listen: Listen,
    /// `REDIS_URL`: the verify-codes database, default `redis://127.0.0.1:6379/2`.
    pub redis_url: String,
}

impl Config {
    /// Read the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(Env::from_process())
    }

    /// Read the given environment snapshot; every bad value is reported.
    pub fn from(mut env: Env) -> Result<Self, ConfigError> {
        let config = Self {
            listen: Listen::from_env(&mut env, 8003),
            redis_url: env.url(
                "REDIS_URL",
                "redis://127.0.0.1:6379/2",
                &["redis://", "rediss://"],
            ),
        };
        env.finish()?;
        Ok(config)
    }
}
