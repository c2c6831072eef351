//! Settings of sms-worker, each read from its environment variable with a default that
//! works for local development (`deploy/dev up`). A bad value stops the start with one line
//! naming every bad variable (exit code 2).

use std::time::Duration;

use shared::config::{ConfigError, Env, Listen};
use shared::queue::QueueSettings;

/// Everything sms-worker reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`, `PORT` (default 8003): the health and metrics port.
    pub listen: Listen,
    /// `REDIS_URL`: the verify-codes database, where the "sent" markers and the attempt
    /// counters live; default `redis://127.0.0.1:6379/2`.
    pub redis_url: String,
    /// `REDIS_TIMEOUT_MS` (default 1000): connect and response timeout of marker commands.
    pub redis_timeout: Duration,
    /// `QUEUE_REDIS_URL`, `SMS_QUEUE`, `QUEUE_TIMEOUT_MS`: the shared queue definition.
    pub queue: QueueSettings,
    /// How this process consumes the queue.
    pub consumer: Consumer,
    /// How failed provider calls are retried.
    pub retry: Retry,
    /// Which provider sends the messages.
    pub provider: Provider,
    /// `SHUTDOWN_TIMEOUT_MS` (default 10000): how long SIGTERM waits for in-flight jobs.
    pub shutdown_timeout: Duration,
}

/// Queue consumption.
#[derive(Debug, Clone)]
pub struct Consumer {
    /// `SMS_WORKER_CONCURRENCY` (default 32): jobs processed at once (I/O bound).
    pub concurrency: usize,
    /// `SMS_WORKER_POLL_MS` (default 100): how often an idle worker looks for new jobs.
    /// apalis-redis does not wake a worker on push, so this bounds the idle latency.
    pub poll_interval: Duration,
    /// `SMS_WORKER_BATCH` (default: the concurrency): jobs fetched per queue round trip.
    pub batch_size: usize,
    /// `SMS_WORKER_HEARTBEAT_SECS` (default 5): how often the worker tells Redis it is alive.
    pub heartbeat: Duration,
    /// `SMS_WORKER_MISSED_HEARTBEATS` (default 4): a worker silent for this many heartbeats is
    /// dead, and the jobs it held go back to the queue (default: after 20–25 s).
    pub missed_heartbeats: usize,
    /// `SMS_QUEUE_RETENTION_SECS` (default 600: the code's 300 s life plus a margin): finished
    /// jobs (done or dead) stay in the queue's Redis this long for inspection, then are
    /// deleted; their payload holds the plaintext code, so not much longer than it is valid.
    pub retention: Duration,
}

/// Default `SMS_QUEUE_RETENTION_SECS`: the code's life plus five minutes.
pub const DEFAULT_RETENTION_SECS: u64 = shared::keys::SMS_CODE_TTL_SECS + 300;

/// Retries of one job.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// `SMS_MAX_ATTEMPTS` (default 5): provider calls per job at most, across redeliveries.
    pub max_attempts: u32,
    /// `SMS_RETRY_BASE_MS` (default 250): the first backoff; it doubles per retry.
    pub base_delay: Duration,
    /// `SMS_RETRY_MAX_MS` (default 8000): the longest backoff.
    pub max_delay: Duration,
}

/// `SMS_PROVIDER`: `ccp` (default) or `log`.
#[derive(Debug, Clone)]
pub enum Provider {
    /// 容联云: sends for real.
    Ccp(CcpSettings),
    /// Development: logs a masked line, sends nothing.
    Log,
}

/// The CCP account and how to reach it.
#[derive(Clone)]
pub struct CcpSettings {
    /// `CCP_BASE_URL` (default `https://app.cloopen.com:8883`).
    pub base_url: String,
    /// `CCP_ACCOUNT_SID`, `CCP_AUTH_TOKEN`, `CCP_APP_ID`: required, 32 hex characters each.
    pub account_sid: String,
    pub auth_token: String,
    pub app_id: String,
    /// `CCP_CONNECT_TIMEOUT_MS` (default 2000) and `CCP_TIMEOUT_MS` (default 5000, the whole
    /// call): the official SDK's (2 s, 5 s).
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

impl std::fmt::Debug for CcpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret; the rest helps when reading a config dump.
        f.debug_struct("CcpSettings")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("app_id", &self.app_id)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Read the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(Env::from_process())
    }

    /// Read the given environment snapshot; every bad value is reported.
    pub fn from(mut env: Env) -> Result<Self, ConfigError> {
        let listen = Listen::from_env(&mut env, 8003);
        let redis_url = env.url(
            "REDIS_URL",
            "redis://127.0.0.1:6379/2",
            &["redis://", "rediss://"],
        );
        let redis_timeout = env.millis("REDIS_TIMEOUT_MS", 1000);
        let queue = QueueSettings::from_env(&mut env);
        let concurrency = env.int_in("SMS_WORKER_CONCURRENCY", 32usize, 1, 4096);
        let consumer = Consumer {
            concurrency,
            poll_interval: env.millis("SMS_WORKER_POLL_MS", 100),
            batch_size: env.int_in("SMS_WORKER_BATCH", concurrency, 1, 10_000),
            heartbeat: env.seconds("SMS_WORKER_HEARTBEAT_SECS", 5),
            missed_heartbeats: env.int_in("SMS_WORKER_MISSED_HEARTBEATS", 4usize, 2, 1000),
            retention: env.seconds("SMS_QUEUE_RETENTION_SECS", DEFAULT_RETENTION_SECS),
        };
        let retry = Retry {
            max_attempts: env.int_in("SMS_MAX_ATTEMPTS", 5u32, 1, 20),
            base_delay: env.millis("SMS_RETRY_BASE_MS", 250),
            max_delay: env.millis("SMS_RETRY_MAX_MS", 8000),
        };
        if retry.max_delay < retry.base_delay {
            env.invalid("SMS_RETRY_MAX_MS", "must not be below SMS_RETRY_BASE_MS");
        }
        let provider = match env.choice("SMS_PROVIDER", "ccp", &["ccp", "log"]).as_str() {
            "log" => Provider::Log,
            _ => Provider::Ccp(CcpSettings {
                base_url: env
                    .url(
                        "CCP_BASE_URL",
                        "https://app.cloopen.com:8883",
                        &["http://", "https://"],
                    )
                    .trim_end_matches('/')
                    .to_owned(),
                account_sid: credential(&mut env, "CCP_ACCOUNT_SID"),
                auth_token: credential(&mut env, "CCP_AUTH_TOKEN"),
                app_id: credential(&mut env, "CCP_APP_ID"),
                connect_timeout: env.millis("CCP_CONNECT_TIMEOUT_MS", 2000),
                timeout: env.millis("CCP_TIMEOUT_MS", 5000),
            }),
        };
        let config = Self {
            listen,
            redis_url,
            redis_timeout,
            queue,
            consumer,
            retry,
            provider,
            shutdown_timeout: env.millis("SHUTDOWN_TIMEOUT_MS", 10_000),
        };
        env.finish()?;
        Ok(config)
    }
}

/// A required CCP credential: 32 hexadecimal characters (the value is never echoed).
fn credential(env: &mut Env, name: &str) -> String {
    let value = env.string(name, "");
    if value.is_empty() {
        env.invalid(name, "required when SMS_PROVIDER=ccp");
    } else if value.len() != 32 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        env.invalid(name, "must be 32 hexadecimal characters");
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ccp_vars() -> Vec<(&'static str, String)> {
        vec![
            ("CCP_ACCOUNT_SID", "a".repeat(32)),
            ("CCP_AUTH_TOKEN", "b".repeat(32)),
            ("CCP_APP_ID", "c".repeat(32)),
        ]
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::from(Env::from_vars(ccp_vars())).expect("valid");
        assert_eq!(c.listen.port, 8003);
        assert_eq!(c.consumer.concurrency, 32);
        assert_eq!(c.consumer.batch_size, 32);
        assert_eq!(c.consumer.poll_interval, Duration::from_millis(100));
        assert_eq!(c.retry.max_attempts, 5);
        assert_eq!(c.consumer.retention, Duration::from_secs(600));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        let Provider::Ccp(ccp) = c.provider else {
            panic!("ccp is the default provider")
        };
        assert_eq!(ccp.base_url, "https://app.cloopen.com:8883");
        assert_eq!(ccp.timeout, Duration::from_secs(5));
        assert!(
            !format!("{ccp:?}").contains(&"b".repeat(32)),
            "token hidden"
        );
    }

    #[test]
    fn the_log_provider_needs_no_credentials() {
        let c = Config::from(Env::from_vars([("SMS_PROVIDER", "LOG")])).expect("valid");
        assert!(matches!(c.provider, Provider::Log));
    }

    #[test]
    fn every_bad_value_is_named_in_one_line() {
        let err = Config::from(Env::from_vars([
            ("CCP_ACCOUNT_SID", "not-hex"),
            ("CCP_BASE_URL", "ftp://x"),
            ("SMS_WORKER_CONCURRENCY", "0"),
            ("SMS_RETRY_BASE_MS", "5000"),
            ("SMS_RETRY_MAX_MS", "100"),
        ]))
        .expect_err("invalid")
        .to_string();
        for name in [
            "CCP_ACCOUNT_SID: must be 32 hexadecimal",
            "CCP_AUTH_TOKEN: required",
            "CCP_APP_ID: required",
            "CCP_BASE_URL=",
            "SMS_WORKER_CONCURRENCY=0",
            "SMS_RETRY_MAX_MS",
        ] {
            assert!(err.contains(name), "{name} missing from {err}");
        }
        assert!(!err.contains('\n'));
    }
}
