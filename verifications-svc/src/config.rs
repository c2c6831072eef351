//! Settings of verifications-svc, each read from its environment variable with a default that
//! works for local development (`deploy/dev up`).

use std::time::Duration;

use ipnet::IpNet;
use shared::config::{ConfigError, Env, Listen, RedisSettings};
use shared::cors::AllowedOrigins;
use shared::queue::QueueSettings;

use crate::store::{Budget, SendLimits};

/// Everything verifications-svc reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`, `PORT` (default 8001), `HTTP_WORKERS`.
    pub listen: Listen,
    /// `REDIS_URL`, `REDIS_TIMEOUT_MS`: the verify-codes database (codes, limits, captchas).
    pub redis: RedisSettings,
    /// `QUEUE_REDIS_URL`, `SMS_QUEUE`, `QUEUE_TIMEOUT_MS`: where `SendSmsCode` jobs go.
    pub queue: QueueSettings,
    /// `SMS_TEMPLATE_ID`, default `1` (CCP's test template).
    pub sms_template_id: String,
    /// The abuse limits and the global budget (`crate::store::SendLimits` holds the defaults):
    /// `SMS_SEND_LIMIT_PER_MOBILE_PER_DAY` [10], `SMS_SEND_LIMIT_PER_IP_PER_HOUR` [20],
    /// `SMS_SEND_LIMIT_PER_PREFIX_PER_HOUR` [50], `SMS_SEND_LIMIT_PER_SUBNET_PER_HOUR` [200],
    /// `CAPTCHA_FAILURES_PER_IP_PER_HOUR` [30], `SMS_BUDGET_PER_MINUTE|HOUR|DAY`
    /// [100, 2000, 20000].
    pub send_limits: SendLimits,
    /// `TRUSTED_PROXIES`, default `127.0.0.1/32`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `CORS_ALLOWED_ORIGINS`, default none (through the gateway the page is same-origin).
    pub cors_allowed_origins: AllowedOrigins,
    /// `CAPTCHA_ISSUE_LIMIT_PER_IP_PER_MINUTE`, default 60: captchas per client IP per minute
    /// (429 beyond, before any render).
    pub captcha_issue_limit_per_minute: u64,
    /// `CAPTCHA_RENDER_WAIT_MS`, default 250: the longest wait for the renders queued ahead on
    /// its worker at which a captcha request is still admitted (503 at once beyond).
    pub captcha_render_wait: Duration,
}

impl Config {
    /// Read the given environment snapshot; every bad value is reported.
    pub fn from(mut env: Env) -> Result<Self, ConfigError> {
        let listen = Listen::from_env(&mut env, 8001);
        let config = Self {
            listen,
            redis: RedisSettings::from_env(&mut env),
            queue: QueueSettings::from_env(&mut env),
            sms_template_id: env.string("SMS_TEMPLATE_ID", "1"),
            send_limits: send_limits(&mut env),
            trusted_proxies: env.networks("TRUSTED_PROXIES", "127.0.0.1/32"),
            cors_allowed_origins: AllowedOrigins::from_env(&mut env),
            captcha_render_wait: env.millis("CAPTCHA_RENDER_WAIT_MS", 250),
            captcha_issue_limit_per_minute: env.int_in(
                "CAPTCHA_ISSUE_LIMIT_PER_IP_PER_MINUTE",
                60,
                1,
                1_000_000_000,
            ),
        };
        env.finish()?;
        Ok(config)
    }
}

/// The `SMS_SEND_LIMIT_*`, `CAPTCHA_FAILURES_*` and `SMS_BUDGET_*` variables.
fn send_limits(env: &mut Env) -> SendLimits {
    let d = SendLimits::default();
    let mut limit = |name: &str, default: u64| env.int_in(name, default, 1, 1_000_000_000);
    SendLimits {
        per_mobile_per_day: limit("SMS_SEND_LIMIT_PER_MOBILE_PER_DAY", d.per_mobile_per_day),
        per_ip_per_hour: limit("SMS_SEND_LIMIT_PER_IP_PER_HOUR", d.per_ip_per_hour),
        per_prefix_per_hour: limit("SMS_SEND_LIMIT_PER_PREFIX_PER_HOUR", d.per_prefix_per_hour),
        per_subnet_per_hour: limit("SMS_SEND_LIMIT_PER_SUBNET_PER_HOUR", d.per_subnet_per_hour),
        captcha_failures_per_ip_per_hour: limit(
            "CAPTCHA_FAILURES_PER_IP_PER_HOUR",
            d.captcha_failures_per_ip_per_hour,
        ),
        budget: Budget {
            per_minute: limit("SMS_BUDGET_PER_MINUTE", d.budget.per_minute),
            per_hour: limit("SMS_BUDGET_PER_HOUR", d.budget.per_hour),
            per_day: limit("SMS_BUDGET_PER_DAY", d.budget.per_day),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::from(Env::from_vars(Vec::<(String, String)>::new())).expect("valid");
        assert_eq!(c.listen.port, 8001);
        assert_eq!(c.redis.url, "redis://127.0.0.1:6379/2");
        assert_eq!(c.queue.redis_url, "redis://127.0.0.1:6379/3");
        assert_eq!(c.sms_template_id, "1");
        assert_eq!(
            c.send_limits,
            SendLimits {
                per_mobile_per_day: 10,
                per_ip_per_hour: 20,
                per_prefix_per_hour: 50,
                per_subnet_per_hour: 200,
                captcha_failures_per_ip_per_hour: 30,
                budget: Budget {
                    per_minute: 100,
                    per_hour: 2000,
                    per_day: 20_000
                },
            }
        );
        assert_eq!(
            c.trusted_proxies,
            vec!["127.0.0.1/32".parse::<IpNet>().expect("net")]
        );
        assert_eq!(c.captcha_render_wait, Duration::from_millis(250));
        assert_eq!(c.captcha_issue_limit_per_minute, 60);
    }

    #[test]
    fn bad_limits_and_proxies_are_all_reported() {
        let err = Config::from(Env::from_vars([
            ("SMS_SEND_LIMIT_PER_MOBILE_PER_DAY", "0"),
            ("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "many"),
            ("TRUSTED_PROXIES", "nginx"),
            ("CAPTCHA_RENDER_WAIT_MS", "0"),
            ("SMS_BUDGET_PER_DAY", "-1"),
        ]))
        .expect_err("five bad values")
        .to_string();
        for name in [
            "SMS_SEND_LIMIT_PER_MOBILE_PER_DAY=0",
            "SMS_SEND_LIMIT_PER_IP_PER_HOUR=\"many\"",
            "TRUSTED_PROXIES: \"nginx\"",
            "CAPTCHA_RENDER_WAIT_MS=0",
            "SMS_BUDGET_PER_DAY=",
        ] {
            assert!(err.contains(name), "{err}");
        }
    }
}
