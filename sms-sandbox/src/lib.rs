//! sms-sandbox: a stand-in for three SMS providers, speaking each one's real wire protocol:
//! 容联云 (CCP) `TemplateSMS`, Aliyun dysmsapi `SendSms`/`QuerySendDetails` and Tencent Cloud
//! SMS `SendSms`/`PullSmsSendStatusByPhoneNumber` (docs/providers.md).
//!
//! It checks every request as the provider does ([`ccp::check`], [`aliyun::check`],
//! [`tencent::check`]: URL, signature, timestamp window, body, the provider's limits) and answers
//! the provider's codes. It de-duplicates only where the real provider does: a repeated CCP
//! `reqId` gets 160054 and is recorded once; Aliyun and Tencent have no such key, so a repeated
//! request is a second message (Aliyun refuses a reused `SignatureNonce`, which is replay
//! protection, not de-duplication). Faults are injected per provider: the next N calls answer a
//! given code, an HTTP error status, a garbled body, or hang (before or after accepting).
//!
//! Use it in-process from a test ([`Sandbox::start`]) or as the `sms-sandbox` binary (for
//! `deploy/dev up`). Its HTTP surface:
//! - `POST /2013-12-26/Accounts/{sid}/SMS/TemplateSMS?sig=…`: CCP;
//! - `POST /` with a form body: Aliyun (RPC style, `Action=SendSms|QuerySendDetails`);
//! - `POST /` with `X-TC-Action`: Tencent (`SendSms`, `PullSmsSendStatusByPhoneNumber`);
//! - `GET /messages[?mobile=]`: JSON `[{"provider","to","app_id","template_id","datas",
//!   "req_id","received_at"}]`, oldest first; `GET /calls`: every provider call and its answer;
//! - `GET /`: an HTML inbox, newest first, refreshing itself, naming the provider of each message;
//! - `POST /control/fail` (`{"provider":"ccp","count":N,"status_code":"160038"}`,
//!   `{"count":N,"http_status":503}`, `{"count":N,"delay_ms":D}`,
//!   `{"count":N,"delay_after_accept_ms":D}`, `{"count":N,"malformed":true}`; without
//!   `provider` a fault applies to whichever provider is called next), `POST /control/latency`
//!   (`{"ms":200}`: every call waits this long, for benchmarks), `POST /control/clear` (queued
//!   faults dropped, records kept), `POST /control/reset` (everything forgotten).

pub mod aliyun;
pub mod ccp;
mod inbox;
mod routes;
pub mod tencent;

use std::collections::{HashSet, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The accounts the sandbox accepts: CCP's (32 hex characters each), Aliyun's and Tencent's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    pub account_sid: String,
    pub auth_token: String,
    pub app_id: String,
    pub aliyun: aliyun::Account,
    pub tencent: tencent::Account,
}

impl SandboxConfig {
    /// Fresh random credentials (32 lower-case hex characters each), so a test proves that
    /// the client really uses the ones it was configured with.
    pub fn random() -> Self {
        let hex = || uuid::Uuid::new_v4().simple().to_string();
        Self {
            account_sid: hex(),
            auth_token: hex(),
            app_id: hex(),
            aliyun: aliyun::Account {
                access_key_id: format!("LTAI{}", &hex()[..20]),
                access_key_secret: hex(),
                sign_name: "美多商城".to_owned(),
                template_code: format!("SMS_{}", uuid::Uuid::new_v4().as_u128() % 1_000_000_000),
            },
            tencent: tencent::Account {
                secret_id: format!("AKID{}", hex()),
                secret_key: hex(),
                sdk_app_id: format!("14{:08}", uuid::Uuid::new_v4().as_u128() % 100_000_000),
                sign_name: "美多商城".to_owned(),
                template_id: format!("{}", uuid::Uuid::new_v4().as_u128() % 1_000_000),
            },
        }
    }

    fn credentials(&self) -> ccp::Credentials<'_> {
        ccp::Credentials {
            account_sid: &self.account_sid,
            auth_token: &self.auth_token,
            app_id: &self.app_id,
        }
    }
}

/// One accepted message, as `GET /messages` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who carried it: `ccp`, `aliyun` or `tencent`.
    pub provider: String,
    /// One recipient, 11 digits (a request to several numbers is recorded once per number).
    pub to: String,
    /// CCP `appId`, Aliyun `AccessKeyId`, Tencent `SmsSdkAppId`.
    pub app_id: String,
    /// CCP `templateId`, Aliyun `TemplateCode`, Tencent `TemplateId`.
    pub template_id: String,
    /// The template variables: CCP `[code, minutes]`, Aliyun the `TemplateParam` values,
    /// Tencent `TemplateParamSet`.
    pub datas: Vec<String>,
    /// The caller's id for the request: CCP `reqId`, Aliyun `OutId`, Tencent `SessionContext`.
    pub req_id: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// One call of the provider endpoint and how it was answered, as `GET /calls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// `ccp`, `aliyun` or `tencent`.
    pub provider: String,
    /// When the request arrived (before any injected delay).
    pub received_at: DateTime<Utc>,
    /// The caller's request id when the body could be read (see [`Message::req_id`]).
    pub req_id: Option<String>,
    /// The HTTP status answered; `None` while the call is still being answered.
    pub http_status: Option<u16>,
    /// The provider's code answered (CCP `000000`, Aliyun `OK`, Tencent `Ok` on success);
    /// `None` for an answer that is not the provider's (an HTTP error page, a garbled body).
    pub status_code: Option<String>,
}

/// A failure to inject into the next `count` calls (default 1). Fields combine: a delay is
/// served first, then `http_status`, `malformed` or `status_code`; a delay alone then answers
/// normally (so a client that gave up may still have had its message recorded, as at CCP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// `ccp`, `aliyun` or `tencent`: only calls of this provider take the fault; `None`: any.
    pub provider: Option<String>,
    #[serde(default = "one")]
    pub count: u32,
    /// Answer this provider code (after the request passed the checks): CCP `statusCode`,
    /// Aliyun `Code`, Tencent `Code` (per number or for the request, as Tencent would).
    pub status_code: Option<String>,
    /// Answer this HTTP status with a non-JSON body, as a failing gateway would.
    pub http_status: Option<u16>,
    /// Wait this long before answering.
    pub delay_ms: Option<u64>,
    /// Accept the request (record the message) first, then wait this long before answering: a
    /// provider that took the message and whose answer is lost.
    pub delay_after_accept_ms: Option<u64>,
    /// Answer HTTP 200 with a body that is not JSON.
    #[serde(default)]
    pub malformed: bool,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// The next `count` calls answer `status_code`.
    pub fn status_code(count: u32, code: &str) -> Self {
        Self {
            count,
            status_code: Some(code.to_owned()),
            ..Self::default()
        }
    }

    /// The next `count` calls answer HTTP `status`.
    pub fn http_status(count: u32, status: u16) -> Self {
        Self {
            count,
            http_status: Some(status),
            ..Self::default()
        }
    }

    /// The next `count` calls hang for `delay` and are then answered normally.
    pub fn delay(count: u32, delay: Duration) -> Self {
        Self {
            count,
            delay_ms: Some(millis(delay)),
            ..Self::default()
        }
    }

    /// The next `count` calls are accepted at once and answered only after `delay`.
    pub fn delay_after_accept(count: u32, delay: Duration) -> Self {
        Self {
            count,
            delay_after_accept_ms: Some(millis(delay)),
            ..Self::default()
        }
    }

    /// A code names its provider: a `status_code` without a `provider` is CCP's.
    pub(crate) fn normalized(mut self) -> Self {
        if self.status_code.is_some() && self.provider.is_none() {
            self.provider = Some("ccp".to_owned());
        }
        self
    }

    /// The same fault, for `provider`'s calls only.
    pub fn on(self, provider: &str) -> Self {
        Self {
            provider: Some(provider.to_owned()),
            ..self
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Everything the sandbox remembers, shared by its HTTP workers and the test holding the handle.
#[derive(Debug)]
struct State {
    config: SandboxConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    messages: Vec<Message>,
    /// CCP `reqId`s seen (CCP's de-duplication).
    req_ids: HashSet<String>,
    /// Aliyun `SignatureNonce`s seen (replay protection).
    nonces: HashSet<String>,
    calls: Vec<Call>,
    faults: VecDeque<Fault>,
    latency: Duration,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the data half-updated in a way that
        // matters to a test fake; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    /// Take one use of the first queued fault that applies to `provider`.
    fn next_fault(&mut self, provider: &str) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|f| f.provider.as_deref().is_none_or(|p| p == provider))?;
        let fault = &mut self.faults[index];
        let taken = fault.clone();
        fault.count = fault.count.saturating_sub(1);
        if fault.count == 0 {
            self.faults.remove(index);
        }
        Some(taken)
    }
}

/// A running sandbox. Cloning shares the same server and records.
#[derive(Debug, Clone)]
pub struct Sandbox {
    port: u16,
    state: Arc<State>,
    handle: ServerHandle,
}

impl Sandbox {
    /// Start a sandbox on a free loopback port, served on the current tokio runtime.
    ///
    /// # Panics
    /// When 127.0.0.1 cannot be bound (test support: there is nothing sensible to recover).
    pub async fn start(config: SandboxConfig) -> Sandbox {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 works");
        let (sandbox, server) =
            Self::build(config, listener, 2, false).expect("the sandbox server starts");
        tokio::spawn(server);
        sandbox
    }

    /// Serve on `listener` with `workers` HTTP worker threads, stopping on SIGTERM/SIGINT; the
    /// caller runs the returned server future (the `sms-sandbox` binary awaits it).
    pub fn serve(
        config: SandboxConfig,
        listener: TcpListener,
        workers: usize,
    ) -> std::io::Result<(Sandbox, Server)> {
        Self::build(config, listener, workers, true)
    }

    fn build(
        config: SandboxConfig,
        listener: TcpListener,
        workers: usize,
        signals: bool,
    ) -> std::io::Result<(Sandbox, Server)> {
        let port = listener.local_addr()?.port();
        let state = Arc::new(State {
            config,
            inner: Mutex::new(Inner::default()),
        });
        let server = routes::server(state.clone(), listener, workers, signals)?;
        let sandbox = Sandbox {
            port,
            state,
            handle: server.handle(),
        };
        Ok((sandbox, server))
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`: what a client's `CCP_BASE_URL` should be.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The credentials it accepts.
    pub fn config(&self) -> &SandboxConfig {
        &self.state.config
    }

    /// Every accepted message, oldest first.
    pub fn messages(&self) -> Vec<Message> {
        self.state.lock().messages.clone()
    }

    /// How many messages were accepted (cheap: for benchmarks polling the inbox).
    pub fn message_count(&self) -> usize {
        self.state.lock().messages.len()
    }

    /// The accepted messages to one mobile, oldest first.
    pub fn messages_for(&self, mobile: &str) -> Vec<Message> {
        self.state
            .lock()
            .messages
            .iter()
            .filter(|m| m.to == mobile)
            .cloned()
            .collect()
    }

    /// Every call of the provider endpoint, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().calls.clone()
    }

    /// Queue a failure for the next calls (after those already queued).
    pub fn inject(&self, fault: Fault) {
        let fault = fault.normalized();
        if fault.count > 0 {
            self.state.lock().faults.push_back(fault);
        }
    }

    /// Every call waits `latency` before it is answered (a slow provider, for benchmarks).
    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().latency = latency;
    }

    /// Forget messages, calls, seen `reqId`s and nonces, queued faults and the latency.
    pub fn reset(&self) {
        *self.state.lock() = Inner::default();
    }

    /// Stop serving (in-flight calls are dropped).
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}
