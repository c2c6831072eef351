//! What the handlers share: the clients and settings of one HTTP worker ([`Codes`]). Routes and
//! start-up both depend on this module, and neither on the other.

use shared::redis_client::RedisClient;

use crate::config::Config;
use crate::domain::captcha::Issuer;
use crate::domain::sms::SmsCodes;

/// The clients and settings the handlers share, one set per HTTP worker.
#[derive(Debug, Clone)]
pub struct Codes {
    /// The verify-codes Redis.
    pub redis: RedisClient,
    /// The queue Redis (the same connection the job storage uses), for `/readyz`.
    pub queue_connection: RedisClient,
    pub sms: SmsCodes,
    /// This worker's render admission, the process's refusal memo (shared by every HTTP
    /// worker), and `CAPTCHA_ISSUE_LIMIT_PER_IP_PER_MINUTE` (under `rl:captcha_issue:{ip}`:
    /// bounds the renders and the `img_` keys, 165 B each, one client can cause).
    pub captcha: Issuer,
}

impl Codes {
    /// Lazy connections: nothing is contacted until the first request, so the service starts
    /// (and answers 503) while Redis is down.
    pub fn connect(config: &Config, captcha: Issuer) -> anyhow::Result<Self> {
        let redis = config.redis.connection()?;
        let queue_connection = config.queue.connection()?;
        Ok(Self {
            sms: SmsCodes {
                redis: redis.clone(),
                queue: config.queue.producer_storage(&queue_connection),
                limits: config.send_limits,
                template_id: config.sms_template_id.clone(),
            },
            redis,
            queue_connection,
            captcha,
        })
    }
}
