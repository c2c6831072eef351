//! SMS providers behind one small trait: given a job, make one attempt to send it and say how
//! it went; after an answer was lost, say what stops a second SMS ([`SmsProvider::resolve`]).
//! Retrying, failover, expiry and idempotency markers are the caller's business
//! ([`crate::delivery`]), so each provider only has to speak its protocol and classify its own
//! answers (each module holds its table). docs/providers.md describes the three protocols.

pub mod aliyun;
pub mod ccp;
pub mod log;
pub mod tencent;

use std::future::Future;
use std::time::Duration;

use shared::jobs::SendSmsCode;

use crate::config;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The provider accepted the message (or had already accepted this request id).
    Sent,
    /// Definitely not sent, worth trying again (here or at another provider): connection
    /// refused, a gateway's 502/503, 429, a retryable provider code.
    Retryable { reason: String },
    /// The message may have been sent: the request left but its answer was lost (a read
    /// timeout, a reset, a garbled answer, a 500/504 after the provider had it). The next
    /// attempt must stay on this provider and go through [`SmsProvider::resolve`].
    Ambiguous { reason: String },
    /// Trying again here cannot help; `scope` says whether another provider may.
    Permanent {
        code: String,
        reason: String,
        scope: Scope,
    },
}

impl Attempt {
    /// A refusal code of `provider` that is worth trying again.
    pub fn retryable(provider: &str, code: &str, message: &str) -> Self {
        Self::Retryable {
            reason: format!("{provider} {code} {message}"),
        }
    }

    /// A refusal code that trying again cannot help: the number's if `number`, else our
    /// account's at this provider.
    pub fn permanent(code: &str, message: impl Into<String>, number: bool) -> Self {
        Self::Permanent {
            code: code.to_owned(),
            reason: message.into(),
            scope: if number {
                Scope::Number
            } else {
                Scope::Account
            },
        }
    }

    /// The `result` label of the provider metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Retryable { .. } => "retryable",
            Self::Ambiguous { .. } => "ambiguous",
            Self::Permanent { .. } => "permanent",
        }
    }
}

/// What a permanent refusal is a property of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The number (blacklisted, malformed, over its frequency or daily cap): no provider may
    /// send it now, and trying another one would only get round the limits.
    Number,
    /// Our account at this provider (credentials, signature name, template, balance, clock):
    /// another provider may well deliver it.
    Account,
}

/// What the provider says about an attempt whose answer was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The provider de-duplicates by our request id: sending again cannot make a second SMS.
    Resend,
    /// The provider has the message: it was sent.
    Sent,
    /// The provider has no such message: any provider may send it.
    NotSent,
    /// Cannot tell yet (the lookup failed, or the provider reports only later): sending again
    /// could be a second SMS; ask again later.
    Unknown { reason: String },
}

impl Resolution {
    /// The `result` label of the provider metrics for the lookup.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Resend => "resend",
            Self::Sent => "found_sent",
            Self::NotSent => "found_not_sent",
            Self::Unknown { .. } => "unresolved",
        }
    }
}

/// One SMS provider.
pub trait SmsProvider: Send + Sync {
    /// The provider's name, for logs, metrics labels and `SMS_PROVIDERS`.
    fn name(&self) -> &'static str;

    /// Try once to send `job`'s code.
    fn send(&self, job: &SendSmsCode) -> impl Future<Output = Attempt> + Send;

    /// After an [`Attempt::Ambiguous`] for `job`: whether it was sent, or whether sending
    /// again is safe.
    fn resolve(&self, job: &SendSmsCode) -> impl Future<Output = Resolution> + Send;
}

/// A configured provider.
#[derive(Debug)]
pub enum Provider {
    Ccp(ccp::Ccp),
    Aliyun(aliyun::Aliyun),
    Tencent(tencent::Tencent),
    Log(log::Log),
}

impl Provider {
    /// Build one provider of `SMS_PROVIDERS`.
    pub fn build(config: &config::Provider) -> anyhow::Result<Self> {
        Ok(match config {
            config::Provider::Ccp(s) => Self::Ccp(ccp::Ccp::new(s.clone())?),
            config::Provider::Aliyun(s) => Self::Aliyun(aliyun::Aliyun::new(s.clone())?),
            config::Provider::Tencent(s) => Self::Tencent(tencent::Tencent::new(s.clone())?),
            config::Provider::Log => Self::Log(log::Log),
        })
    }
}

impl SmsProvider for Provider {
    fn name(&self) -> &'static str {
        match self {
            Self::Ccp(p) => p.name(),
            Self::Aliyun(p) => p.name(),
            Self::Tencent(p) => p.name(),
            Self::Log(p) => p.name(),
        }
    }

    async fn send(&self, job: &SendSmsCode) -> Attempt {
        match self {
            Self::Ccp(p) => p.send(job).await,
            Self::Aliyun(p) => p.send(job).await,
            Self::Tencent(p) => p.send(job).await,
            Self::Log(p) => p.send(job).await,
        }
    }

    async fn resolve(&self, job: &SendSmsCode) -> Resolution {
        match self {
            Self::Ccp(p) => p.resolve(job).await,
            Self::Aliyun(p) => p.resolve(job).await,
            Self::Tencent(p) => p.resolve(job).await,
            Self::Log(p) => p.resolve(job).await,
        }
    }
}

/// The HTTP client of one provider: its timeouts, a connection pool for the process. The rustls
/// crypto provider must be installed before (main does it once); reqwest panics without one.
pub fn http_client(
    provider: &str,
    connect_timeout: Duration,
    timeout: Duration,
) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("meiduo-sms-worker/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the {provider} HTTP client: {e}"))
}

/// A request that got no usable answer. A connection that was never made is a definite
/// failure; anything after the request may have left (a read timeout, a reset, a broken body)
/// is ambiguous. The URL is dropped from the text: it may carry a signature.
pub fn transport_error(e: reqwest::Error) -> Attempt {
    let e = e.without_url();
    if e.is_connect() {
        Attempt::Retryable {
            reason: format!("connect error: {e}"),
        }
    } else if e.is_timeout() {
        Attempt::Ambiguous {
            reason: format!("timeout: {e}"),
        }
    } else {
        Attempt::Ambiguous {
            reason: format!("transport error: {e}"),
        }
    }
}

/// An HTTP error status that is not the provider's own answer: 429, 502 and 503 come from a
/// gateway or an overloaded front before the provider took the request (definite); 500 and
/// 504 may come after it did (ambiguous). `None` for every other status.
pub fn gateway_status(status: reqwest::StatusCode) -> Option<Attempt> {
    let reason = format!("HTTP {}", status.as_u16());
    match status.as_u16() {
        429 | 502 | 503 => Some(Attempt::Retryable { reason }),
        s if s >= 500 => Some(Attempt::Ambiguous { reason }),
        _ => None,
    }
}

/// POST `body` and return the status and text of the answer, or the attempt a transport
/// failure amounts to.
pub async fn post(
    request: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, String), Attempt> {
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    let text = response.text().await.map_err(transport_error)?;
    Ok((status, text))
}
