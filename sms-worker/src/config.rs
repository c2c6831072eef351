//! Settings of sms-worker, each read from its environment variable with a default that
//! works for local development (`deploy/dev up`). A bad value stops the start with one line
//! naming every bad variable (exit code 2).

use std::time::Duration;

use shared::config::{ConfigError, Env, Listen, RedisSettings};
use shared::queue::QueueSettings;

/// Everything sms-worker reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`, `PORT` (default 8003): the health and metrics port.
    pub listen: Listen,
    /// `REDIS_URL`, `REDIS_TIMEOUT_MS`: the verify-codes database, where the "sent" markers
    /// and the attempt counters live.
    pub redis: RedisSettings,
    /// `QUEUE_REDIS_URL`, `SMS_QUEUE`, `QUEUE_TIMEOUT_MS`: the shared queue definition.
    pub queue: QueueSettings,
    /// How this process consumes the queue.
    pub consumer: Consumer,
    /// How failed provider calls are retried.
    pub retry: Retry,
    /// `SMS_PROVIDERS` (or `SMS_PROVIDER`, a one-item list): the providers in order of
    /// preference; a job goes to the first whose breaker is closed.
    pub providers: Vec<Provider>,
    /// The circuit breaker of each provider.
    pub breaker: Breaker,
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
    /// `SMS_MAX_ATTEMPTS` (default 15): provider calls per job at most, across redeliveries.
    /// With the default (equally jittered) backoff fifteen calls span 40 to 80 s, so an outage
    /// of every provider shorter than that delays codes instead of losing them (bench/faults.sh:
    /// with 5, a 30 s outage lost two codes in three). Each call repeats the job's request id,
    /// so a provider that did send before failing de-duplicates the repeat.
    pub max_attempts: u32,
    /// `SMS_RETRY_BASE_MS` (default 250): the first backoff; it doubles per retry.
    pub base_delay: Duration,
    /// `SMS_RETRY_MAX_MS` (default 8000): the longest backoff.
    pub max_delay: Duration,
}

/// When a provider is skipped: after `SMS_BREAKER_FAILURES` (default 5) retryable failures or
/// timeouts in a row its breaker opens; after `SMS_BREAKER_COOLDOWN_MS` (default 30000) one
/// job may probe it (half-open); a success closes it, a failure opens it again.
#[derive(Debug, Clone, Copy)]
pub struct Breaker {
    pub failures: u32,
    pub cooldown: Duration,
}

/// One item of `SMS_PROVIDERS`: `ccp`, `aliyun`, `tencent` or `log`.
#[derive(Debug, Clone)]
pub enum Provider {
    /// 容联云.
    Ccp(CcpSettings),
    /// Aliyun SMS.
    Aliyun(AliyunSettings),
    /// Tencent Cloud SMS.
    Tencent(TencentSettings),
    /// Development: logs a masked line, sends nothing.
    Log,
}

/// The Aliyun account: `ALIYUN_ACCESS_KEY_ID`, `ALIYUN_ACCESS_KEY_SECRET`, `ALIYUN_SIGN_NAME`
/// and `ALIYUN_TEMPLATE_CODE` (required); `ALIYUN_BASE_URL` (default
/// `https://dysmsapi.aliyuncs.com`); `ALIYUN_CONNECT_TIMEOUT_MS` (2000) and `ALIYUN_TIMEOUT_MS`
/// (5000; Aliyun asks for at least 1 s).
#[derive(Clone)]
pub struct AliyunSettings {
    pub base_url: String,
    pub access_key_id: String,
    pub access_key_secret: String,
    pub sign_name: String,
    pub template_code: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

impl std::fmt::Debug for AliyunSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of config dumps.
        f.debug_struct("AliyunSettings")
            .field("base_url", &self.base_url)
            .field("access_key_id", &self.access_key_id)
            .field("sign_name", &self.sign_name)
            .field("template_code", &self.template_code)
            .finish_non_exhaustive()
    }
}

/// The Tencent account: `TENCENT_SECRET_ID`, `TENCENT_SECRET_KEY`, `TENCENT_SMS_SDK_APP_ID`,
/// `TENCENT_SIGN_NAME` and `TENCENT_TEMPLATE_ID` (required); `TENCENT_REGION` (default
/// `ap-guangzhou`); `TENCENT_BASE_URL` (default `https://sms.tencentcloudapi.com`);
/// `TENCENT_CONNECT_TIMEOUT_MS` (2000) and `TENCENT_TIMEOUT_MS` (5000).
#[derive(Clone)]
pub struct TencentSettings {
    pub base_url: String,
    pub secret_id: String,
    pub secret_key: String,
    pub sdk_app_id: String,
    pub sign_name: String,
    pub template_id: String,
    pub region: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

impl std::fmt::Debug for TencentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TencentSettings")
            .field("base_url", &self.base_url)
            .field("secret_id", &self.secret_id)
            .field("sdk_app_id", &self.sdk_app_id)
            .field("sign_name", &self.sign_name)
            .field("template_id", &self.template_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
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
    /// Read the given environment snapshot; every bad value is reported.
    pub fn from(mut env: Env) -> Result<Self, ConfigError> {
        let listen = Listen::from_env(&mut env, 8003);
        let redis = RedisSettings::from_env(&mut env);
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
            max_attempts: env.int_in("SMS_MAX_ATTEMPTS", 15u32, 1, 50),
            base_delay: env.millis("SMS_RETRY_BASE_MS", 250),
            max_delay: env.millis("SMS_RETRY_MAX_MS", 8000),
        };
        if retry.max_delay < retry.base_delay {
            env.invalid("SMS_RETRY_MAX_MS", "must not be below SMS_RETRY_BASE_MS");
        }
        let providers = providers(&mut env);
        let breaker = Breaker {
            failures: env.int_in("SMS_BREAKER_FAILURES", 5u32, 1, 1000),
            cooldown: env.millis("SMS_BREAKER_COOLDOWN_MS", 30_000),
        };
        let config = Self {
            listen,
            redis,
            queue,
            consumer,
            retry,
            providers,
            breaker,
            shutdown_timeout: env.millis("SHUTDOWN_TIMEOUT_MS", 10_000),
        };
        env.finish()?;
        Ok(config)
    }
}

/// The names `SMS_PROVIDERS` accepts.
const PROVIDER_NAMES: [&str; 4] = ["ccp", "aliyun", "tencent", "log"];

/// `SMS_PROVIDERS` (comma-separated, in order of preference), else `SMS_PROVIDER` (one name),
/// else `ccp`; each with its own settings.
fn providers(env: &mut Env) -> Vec<Provider> {
    let (var, names) = match env.raw("SMS_PROVIDERS") {
        Some(_) => ("SMS_PROVIDERS", env.list("SMS_PROVIDERS", "")),
        None => ("SMS_PROVIDER", vec![env.string("SMS_PROVIDER", "ccp")]),
    };
    let mut seen = Vec::new();
    let mut list = Vec::new();
    for name in names {
        let name = name.to_ascii_lowercase();
        if !PROVIDER_NAMES.contains(&name.as_str()) {
            env.invalid(
                var,
                format!("{name:?} is not one of ccp, aliyun, tencent, log"),
            );
        } else if seen.contains(&name) {
            env.invalid(var, format!("{name} is listed twice"));
        } else {
            list.push(provider(env, &name));
            seen.push(name);
        }
    }
    if list.is_empty() && seen.is_empty() {
        env.invalid(var, "names no provider");
    }
    list
}

fn provider(env: &mut Env, name: &str) -> Provider {
    match name {
        "log" => Provider::Log,
        "aliyun" => Provider::Aliyun(AliyunSettings {
            base_url: base_url(env, "ALIYUN_BASE_URL", "https://dysmsapi.aliyuncs.com"),
            access_key_id: required(env, "ALIYUN_ACCESS_KEY_ID", name),
            access_key_secret: required(env, "ALIYUN_ACCESS_KEY_SECRET", name),
            sign_name: required(env, "ALIYUN_SIGN_NAME", name),
            template_code: required(env, "ALIYUN_TEMPLATE_CODE", name),
            connect_timeout: env.millis("ALIYUN_CONNECT_TIMEOUT_MS", 2000),
            timeout: env.millis("ALIYUN_TIMEOUT_MS", 5000),
        }),
        "tencent" => Provider::Tencent(TencentSettings {
            base_url: base_url(env, "TENCENT_BASE_URL", "https://sms.tencentcloudapi.com"),
            secret_id: required(env, "TENCENT_SECRET_ID", name),
            secret_key: required(env, "TENCENT_SECRET_KEY", name),
            sdk_app_id: required(env, "TENCENT_SMS_SDK_APP_ID", name),
            sign_name: required(env, "TENCENT_SIGN_NAME", name),
            template_id: required(env, "TENCENT_TEMPLATE_ID", name),
            region: env.string("TENCENT_REGION", "ap-guangzhou"),
            connect_timeout: env.millis("TENCENT_CONNECT_TIMEOUT_MS", 2000),
            timeout: env.millis("TENCENT_TIMEOUT_MS", 5000),
        }),
        _ => Provider::Ccp(CcpSettings {
            base_url: base_url(env, "CCP_BASE_URL", "https://app.cloopen.com:8883"),
            account_sid: credential(env, "CCP_ACCOUNT_SID"),
            auth_token: credential(env, "CCP_AUTH_TOKEN"),
            app_id: credential(env, "CCP_APP_ID"),
            connect_timeout: env.millis("CCP_CONNECT_TIMEOUT_MS", 2000),
            timeout: env.millis("CCP_TIMEOUT_MS", 5000),
        }),
    }
}

fn base_url(env: &mut Env, name: &str, default: &str) -> String {
    env.url(name, default, &["http://", "https://"])
        .trim_end_matches('/')
        .to_owned()
}

/// A setting a listed provider cannot work without (the value is never echoed).
fn required(env: &mut Env, name: &str, provider: &str) -> String {
    let value = env.string(name, "");
    if value.is_empty() {
        env.invalid(
            name,
            format!("required when {provider} is in SMS_PROVIDERS"),
        );
    }
    value
}

/// A required CCP credential: 32 hexadecimal characters (the value is never echoed).
fn credential(env: &mut Env, name: &str) -> String {
    let value = env.string(name, "");
    if value.is_empty() {
        env.invalid(name, "required when ccp is in SMS_PROVIDERS");
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
        assert_eq!(c.retry.max_attempts, 15);
        assert_eq!(c.consumer.retention, Duration::from_secs(600));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        let [Provider::Ccp(ccp)] = &c.providers[..] else {
            panic!("ccp alone is the default")
        };
        assert_eq!(c.breaker.failures, 5);
        assert_eq!(c.breaker.cooldown, Duration::from_secs(30));
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
        assert!(matches!(c.providers[..], [Provider::Log]));
    }

    #[test]
    fn sms_providers_is_an_ordered_list_each_with_its_own_settings() {
        let mut vars = ccp_vars();
        vars.extend([
            ("SMS_PROVIDERS", "tencent, aliyun,ccp".to_owned()),
            ("SMS_PROVIDER", "log".to_owned()),
            ("ALIYUN_ACCESS_KEY_ID", "LTAI1".to_owned()),
            ("ALIYUN_ACCESS_KEY_SECRET", "s1".to_owned()),
            ("ALIYUN_SIGN_NAME", "美多".to_owned()),
            ("ALIYUN_TEMPLATE_CODE", "SMS_1".to_owned()),
            ("TENCENT_SECRET_ID", "AKID1".to_owned()),
            ("TENCENT_SECRET_KEY", "s2".to_owned()),
            ("TENCENT_SMS_SDK_APP_ID", "1400000001".to_owned()),
            ("TENCENT_SIGN_NAME", "美多".to_owned()),
            ("TENCENT_TEMPLATE_ID", "42".to_owned()),
            ("TENCENT_BASE_URL", "http://127.0.0.1:9/".to_owned()),
        ]);
        let c = Config::from(Env::from_vars(vars)).expect("valid");
        let [Provider::Tencent(t), Provider::Aliyun(a), Provider::Ccp(_)] = &c.providers[..] else {
            panic!("SMS_PROVIDERS wins, in its order: {:?}", c.providers)
        };
        assert_eq!(t.base_url, "http://127.0.0.1:9");
        assert_eq!(t.region, "ap-guangzhou");
        assert_eq!(a.base_url, "https://dysmsapi.aliyuncs.com");
        assert!(!format!("{t:?}{a:?}").contains("s1") && !format!("{t:?}").contains("s2"));

        let err = Config::from(Env::from_vars([("SMS_PROVIDERS", "aliyun,twilio,aliyun")]))
            .expect_err("invalid")
            .to_string();
        for part in [
            "ALIYUN_ACCESS_KEY_ID: required when aliyun is in SMS_PROVIDERS",
            "ALIYUN_TEMPLATE_CODE: required",
            "\"twilio\" is not one of",
            "aliyun is listed twice",
        ] {
            assert!(err.contains(part), "{part} missing from {err}");
        }
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
            "CCP_AUTH_TOKEN: required when ccp is in SMS_PROVIDERS",
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
