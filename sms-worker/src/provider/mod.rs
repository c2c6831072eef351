//! SMS providers behind one small trait: given a job, make one attempt to send it and say how
//! it went. Retrying, expiry and idempotency are the caller's business ([`crate::delivery`]),
//! so each provider only has to classify its own answers.

pub mod ccp;
pub mod log;

use std::future::Future;

use shared::jobs::SendSmsCode;

use crate::config;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The provider accepted the message (or had already accepted this request id).
    Sent,
    /// Worth trying again later: transport errors, timeouts, HTTP 5xx, "busy"/internal codes.
    Retryable { reason: String },
    /// Trying again cannot help: bad number, blacklist, daily cap, bad credentials or template.
    Permanent { code: String, reason: String },
}

/// One SMS provider.
pub trait SmsProvider: Send + Sync {
    /// The provider's name, for logs and metrics labels.
    fn name(&self) -> &'static str;

    /// Try once to send `job`'s code.
    fn send(&self, job: &SendSmsCode) -> impl Future<Output = Attempt> + Send;
}

/// The configured provider.
#[derive(Debug)]
pub enum Provider {
    Ccp(ccp::Ccp),
    Log(log::Log),
}

impl Provider {
    /// Build the provider chosen by `SMS_PROVIDER`.
    pub fn build(config: &config::Provider) -> anyhow::Result<Self> {
        Ok(match config {
            config::Provider::Ccp(settings) => Self::Ccp(ccp::Ccp::new(settings.clone())?),
            config::Provider::Log => Self::Log(log::Log),
        })
    }
}

impl SmsProvider for Provider {
    fn name(&self) -> &'static str {
        match self {
            Self::Ccp(p) => p.name(),
            Self::Log(p) => p.name(),
        }
    }

    async fn send(&self, job: &SendSmsCode) -> Attempt {
        match self {
            Self::Ccp(p) => p.send(job).await,
            Self::Log(p) => p.send(job).await,
        }
    }
}
