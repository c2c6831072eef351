//! The SMS job queue: one definition of where `SendSmsCode` jobs live, used by the producer
//! (verifications-svc) and the consumer (sms-worker), so the two can never disagree on the
//! queue name, the Redis database or the encoding.
//!
//! The queue is apalis-redis 1.0 storage (JSON-encoded jobs) in its own Redis database
//! (`QUEUE_REDIS_URL`) under its own name (`SMS_QUEUE`). apalis needs a `redis`
//! `ConnectionManager` of its own: it cannot borrow connections from the deadpool pool.

use std::time::Duration;

use apalis_redis::{ConnectionManager, RedisStorage};
use redis::aio::ConnectionManagerConfig;

use crate::config::Env;
use crate::jobs::{DEFAULT_SMS_QUEUE, SendSmsCode};

/// The storage of [`SendSmsCode`] jobs.
pub type SmsStorage = RedisStorage<SendSmsCode, ConnectionManager>;

/// Where the SMS queue lives.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// `QUEUE_REDIS_URL`, default `redis://127.0.0.1:6379/3`.
    pub redis_url: String,
    /// `SMS_QUEUE`, default `meiduo:sms_codes`.
    pub name: String,
    /// `QUEUE_TIMEOUT_MS`, default 2000: connect and response timeout of queue commands.
    pub timeout: Duration,
}

impl QueueSettings {
    /// Read `QUEUE_REDIS_URL`, `SMS_QUEUE` and `QUEUE_TIMEOUT_MS`.
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            redis_url: env.url(
                "QUEUE_REDIS_URL",
                "redis://127.0.0.1:6379/3",
                &["redis://", "rediss://"],
            ),
            name: env.string("SMS_QUEUE", DEFAULT_SMS_QUEUE),
            timeout: env.millis("QUEUE_TIMEOUT_MS", 2000),
        }
    }

    /// A connection manager that connects on first use and reconnects by itself after Redis
    /// restarts. The response timeout is explicit: redis-rs' default (500 ms) makes apalis treat
    /// a slow moment under load as a fatal stream error (apalis-redis #76).
    pub fn connection(&self) -> anyhow::Result<ConnectionManager> {
        let client = redis::Client::open(self.redis_url.as_str())
            .map_err(|e| anyhow::anyhow!("QUEUE_REDIS_URL is not a usable Redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(ConnectionManager::new_lazy_with_config(client, config)?)
    }

    /// The apalis storage configuration of the SMS queue (name set explicitly: the default
    /// would be the Rust type's path, which changes when code moves).
    pub fn apalis_config(&self) -> apalis_redis::Config {
        apalis_redis::Config::default().queue(self.name.as_str())
    }

    /// The SMS job storage over `conn`.
    pub fn storage(&self, conn: ConnectionManager) -> SmsStorage {
        RedisStorage::new(conn).with_config(self.apalis_config())
    }
}
