//! The SMS job queue: one definition of where `SendSmsCode` jobs live, used by the producer
//! (verifications-svc) and the consumer (sms-worker), so the two can never disagree on the
//! queue name, the Redis database or the encoding.
//!
//! The queue is apalis-redis 1.0 storage (JSON-encoded jobs) in its own Redis database
//! (`QUEUE_REDIS_URL`) under its own name (`SMS_QUEUE`), over the shared
//! [`RedisClient`](crate::redis_client::RedisClient).

use std::time::Duration;

use apalis_redis::RedisStorage;

use crate::config::Env;
use crate::jobs::{DEFAULT_SMS_QUEUE, SendSmsCode};
use crate::redis_client::{RedisClient, Replay, Timeouts};

/// The storage of [`SendSmsCode`] jobs.
pub type SmsStorage = RedisStorage<SendSmsCode, RedisClient>;

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

    /// The queue's connection: connects on first use and repairs itself after Redis restarts.
    /// The response timeout is explicit: redis-rs' default (500 ms) makes apalis treat a slow
    /// moment under load as a fatal stream error (apalis-redis #76).
    ///
    /// Commands are [`Replay::Never`]: apalis' fetch script moves jobs into this worker's
    /// in-flight set, so a second run would strand the first run's batch. The producer's push is
    /// replay-safe and says so at the call ([`QueueSettings::producer_storage`]).
    pub fn connection(&self) -> anyhow::Result<RedisClient> {
        RedisClient::new(&self.redis_url, "queue", Timeouts::both(self.timeout))
    }

    /// The apalis storage configuration of the SMS queue (name set explicitly: the default
    /// would be the Rust type's path, which changes when code moves).
    pub fn apalis_config(&self) -> apalis_redis::Config {
        apalis_redis::Config::default().queue(self.name.as_str())
    }

    /// The SMS job storage over `conn`.
    pub fn storage(&self, conn: RedisClient) -> SmsStorage {
        RedisStorage::new(conn).with_config(self.apalis_config())
    }

    /// The storage a producer pushes with: its commands are resent once if the connection
    /// turns out dead. Safe because a producer only runs two things on it:
    /// - apalis-redis' `batch_push.lua` with the task id the producer chose: it writes with
    ///   `HSETNX` under that id and does nothing else when the id is already stored, so a
    ///   second run of a push that did land changes nothing and queues no second job;
    /// - `fetch_by_id` (the lost-reply check), a read.
    pub fn producer_storage(&self, conn: &RedisClient) -> SmsStorage {
        self.storage(conn.replay(Replay::Safe))
    }
}
