//! Settings of verifications-svc, each read from its environment variable with a default that
//! works for local development (`deploy/dev up`).

use std::time::Duration;

use ipnet::IpNet;
use shared::config::{ConfigError, Env, Listen};
use shared::cors::AllowedOrigins;
use shared::queue::QueueSettings;

/// Everything verifications-svc reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`, `PORT` (default 8001), `HTTP_WORKERS`.
    pub listen: Listen,
    /// `REDIS_URL`: the verify-codes database, default `redis://127.0.0.1:6379/2`.
    pub redis_url: String,
    /// `REDIS_TIMEOUT_MS`, default 1000: connect and response timeout of Redis commands, so a
    /// request fails fast with 503 when Redis is down instead of hanging.
    pub redis_timeout: Duration,
    /// `QUEUE_REDIS_URL`, `SMS_QUEUE`, `QUEUE_TIMEOUT_MS`: where `SendSmsCode` jobs go.
    pub queue: QueueSettings,
    /// `SMS_TEMPLATE_ID`, default `1` (CCP's test template).
    pub sms_template_id: String,
    /// `SMS_SEND_LIMIT_PER_MOBILE_PER_DAY`, default 10 sends per mobile per 24 h.
    pub sms_limit_per_mobile_per_day: u64,
    /// `SMS_SEND_LIMIT_PER_IP_PER_HOUR`, default 20 sends per client IP per hour.
    pub sms_limit_per_ip_per_hour: u64,
    /// `TRUSTED_PROXIES`, default `127.0.0.1/32`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `CORS_ALLOWED_ORIGINS`, default none (through the gateway the page is same-origin).
    pub cors_allowed_origins: AllowedOrigins,
    /// `CAPTCHA_MAX_CONCURRENT_RENDERS`, default 2 × cores: captcha renders at a time in this
    /// process (each holds a blocking-pool thread); more wait, then get 503.
    pub captcha_max_concurrent_renders: usize,
    /// `CAPTCHA_RENDER_WAIT_MS`, default 250: how long a captcha request waits for a render slot
    /// before its 503.
    pub captcha_render_wait: Duration,
}

impl Config {
    /// Read the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(Env::from_process())
    }

    /// Read the given environment snapshot; every bad value is reported.
    pub fn from(mut env: Env) -> Result<Self, ConfigError> {
        let config = Self {
            listen: Listen::from_env(&mut env, 8001),
            redis_url: env.url(
                "REDIS_URL",
                "redis://127.0.0.1:6379/2",
                &["redis://", "rediss://"],
            ),
            redis_timeout: env.millis("REDIS_TIMEOUT_MS", 1000),
            queue: QueueSettings::from_env(&mut env),
            sms_template_id: env.string("SMS_TEMPLATE_ID", "1"),
            sms_limit_per_mobile_per_day: env.int_in(
                "SMS_SEND_LIMIT_PER_MOBILE_PER_DAY",
                10,
                1,
                1_000_000_000,
            ),
            sms_limit_per_ip_per_hour: env.int_in(
                "SMS_SEND_LIMIT_PER_IP_PER_HOUR",
                20,
                1,
                1_000_000_000,
            ),
            trusted_proxies: env.networks("TRUSTED_PROXIES", "127.0.0.1/32"),
            cors_allowed_origins: AllowedOrigins::from_env(&mut env),
            captcha_max_concurrent_renders: env.int_in(
                "CAPTCHA_MAX_CONCURRENT_RENDERS",
                2 * std::thread::available_parallelism().map_or(2, usize::from),
                1,
                512,
            ),
            captcha_render_wait: env.millis("CAPTCHA_RENDER_WAIT_MS", 250),
        };
        env.finish()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::from(Env::from_vars(Vec::<(String, String)>::new())).expect("valid");
        assert_eq!(c.listen.port, 8001);
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379/2");
        assert_eq!(c.queue.redis_url, "redis://127.0.0.1:6379/3");
        assert_eq!(c.sms_template_id, "1");
        assert_eq!(
            (c.sms_limit_per_mobile_per_day, c.sms_limit_per_ip_per_hour),
            (10, 20)
        );
        assert_eq!(
            c.trusted_proxies,
            vec!["127.0.0.1/32".parse::<IpNet>().expect("net")]
        );
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        assert_eq!(c.captcha_max_concurrent_renders, 2 * cores);
        assert_eq!(c.captcha_render_wait, Duration::from_millis(250));
    }

    #[test]
    fn bad_limits_and_proxies_are_all_reported() {
        let err = Config::from(Env::from_vars([
            ("SMS_SEND_LIMIT_PER_MOBILE_PER_DAY", "0"),
            ("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "many"),
            ("TRUSTED_PROXIES", "nginx"),
            ("CAPTCHA_MAX_CONCURRENT_RENDERS", "0"),
        ]))
        .expect_err("four bad values")
        .to_string();
        for name in [
            "SMS_SEND_LIMIT_PER_MOBILE_PER_DAY=0",
            "SMS_SEND_LIMIT_PER_IP_PER_HOUR=\"many\"",
            "TRUSTED_PROXIES: \"nginx\"",
            "CAPTCHA_MAX_CONCURRENT_RENDERS=0",
        ] {
            assert!(err.contains(name), "{err}");
        }
    }
}
