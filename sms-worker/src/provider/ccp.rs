//! 容联云 (Yuntongxun, "CCP") `TemplateSMS`, exactly as docs/providers.md describes it:
//! `POST {base}/2013-12-26/Accounts/{sid}/SMS/TemplateSMS?sig={SIG}` where `SIG` is the
//! upper-case MD5 of sid + token + timestamp, `Authorization` is base64 of `sid:timestamp`, the
//! timestamp is `yyyyMMddHHmmss` in Asia/Shanghai time, and the JSON body carries `to`, `appId`,
//! `templateId`, `datas: [code, minutes]` (strings) and `reqId` = the job's request id as 32
//! lower-case hex characters (CCP takes at most 32 alphanumerics and answers 160055, a permanent
//! refusal, to a hyphenated UUID), which CCP uses to reject a repeated request (160054): our
//! guard against double sends when an answer is lost.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, FixedOffset, Utc};
use md5::{Digest, Md5};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::jobs::SendSmsCode;

use super::{Attempt, Resolution, Scope, SmsProvider};
use crate::config::CcpSettings;

/// The REST version segment CCP has kept since 2013.
const VERSION: &str = "2013-12-26";

/// The CCP client: one `reqwest::Client` (connection pool) for the process.
pub struct Ccp {
    settings: CcpSettings,
    client: reqwest::Client,
}

impl std::fmt::Debug for Ccp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ccp")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Ccp {
    /// Build the HTTP client with the configured timeouts.
    pub fn new(settings: CcpSettings) -> anyhow::Result<Self> {
        let client = super::http_client("CCP", settings.connect_timeout, settings.timeout)?;
        Ok(Self { settings, client })
    }

    /// The request URL, `Authorization` header and body for `job` at `now`.
    pub fn request_parts(&self, job: &SendSmsCode, now: DateTime<Utc>) -> (String, String, Value) {
        let s = &self.settings;
        let ts = timestamp(now);
        let url = format!(
            "{}/{VERSION}/Accounts/{}/SMS/TemplateSMS?sig={}",
            s.base_url,
            s.account_sid,
            sig(&s.account_sid, &s.auth_token, &ts)
        );
        let body = json!({
            "to": job.mobile.as_str(),
            "appId": s.app_id,
            "templateId": job.template_id,
            "datas": [job.code.as_str(), job.ttl_minutes.to_string()],
            "reqId": req_id(job),
        });
        (url, authorization(&s.account_sid, &ts), body)
    }
}

impl SmsProvider for Ccp {
    fn name(&self) -> &'static str {
        "ccp"
    }

    async fn send(&self, job: &SendSmsCode) -> Attempt {
        let (url, auth, body) = self.request_parts(job, Utc::now());
        let request = self
            .client
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json;charset=utf-8",
            )
            .header(reqwest::header::ACCEPT_CHARSET, "UTF-8")
            .header(reqwest::header::AUTHORIZATION, auth)
            .body(body.to_string());
        match super::post(request).await {
            Ok((status, text)) => classify_response(status, &text),
            Err(attempt) => attempt,
        }
    }

    /// CCP refuses a second request with the same `reqId` (160054, which [`classify_code`]
    /// counts as sent): sending again is safe.
    async fn resolve(&self, _job: &SendSmsCode) -> Resolution {
        Resolution::Resend
    }
}

/// Sort an HTTP answer into the outcome classes.
pub fn classify_response(status: StatusCode, body: &str) -> Attempt {
    if let Some(attempt) = super::gateway_status(status) {
        return attempt;
    }
    if !status.is_success() {
        // A 4xx without a CCP body: wrong base URL or path; retrying will not fix configuration.
        return Attempt::Permanent {
            code: format!("HTTP {}", status.as_u16()),
            reason: "unexpected HTTP status from CCP".into(),
            scope: Scope::Account,
        };
    }
    // A garbled answer may hide an accepted message: ambiguous (reqId makes the resend safe).
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return Attempt::Ambiguous {
            reason: "answer is not JSON".into(),
        };
    };
    let code = match &value["statusCode"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => format!("{n:0>6}"),
        _ => {
            return Attempt::Ambiguous {
                reason: "answer has no statusCode".into(),
            };
        }
    };
    let msg = value["statusMsg"].as_str().unwrap_or_default().to_owned();
    classify_code(&code, msg)
}

/// CCP's status codes, as this worker treats them.
///
/// | codes | class |
/// |---|---|
/// | 000000; 160054 (this `reqId` was already accepted) | sent |
/// | 111111 (too many concurrent requests), 160000 (system error), 111000-111099 (internal), 160050/160063/160064 (send failed), 172001 (the SDK's network error) | retryable |
/// | 160038 (frequency), 160039-160041 (daily caps), 160034/112317/160068/160072-160074 (blacklists), 160042 (number format) | permanent, the number's |
/// | everything else: 111100-111113 (URL, `Authorization`, sig, timestamp), 111128-111182 (account and app state, balance), 160031/160032/160036/160043/160052/160055/160057/160069 (parameters, template), 113302 (test template to an unregistered number) | permanent, the account's |
pub fn classify_code(code: &str, msg: String) -> Attempt {
    let internal = code.len() == 6 && code.starts_with("1110");
    let number = matches!(
        code,
        "160038"
            | "160039"
            | "160040"
            | "160041"
            | "160034"
            | "112317"
            | "160068"
            | "160072"
            | "160073"
            | "160074"
            | "160042"
    );
    match code {
        "000000" | "160054" => Attempt::Sent,
        "111111" | "160000" | "160050" | "160063" | "160064" | "172001" => {
            Attempt::retryable("CCP", code, &msg)
        }
        _ if internal => Attempt::retryable("CCP", code, &msg),
        _ => Attempt::permanent(code, msg, number),
    }
}

/// The `reqId` of `job`: its request id without hyphens (32 hex characters, CCP's maximum).
pub fn req_id(job: &SendSmsCode) -> String {
    job.request_id.simple().to_string()
}

/// `yyyyMMddHHmmss` in Asia/Shanghai time (fixed +08:00: no daylight saving since 1991).
pub fn timestamp(now: DateTime<Utc>) -> String {
    let shanghai = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    now.with_timezone(&shanghai)
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// Upper-case hex MD5 of sid + token + timestamp.
pub fn sig(account_sid: &str, auth_token: &str, timestamp: &str) -> String {
    Md5::new()
        .chain_update(account_sid)
        .chain_update(auth_token)
        .chain_update(timestamp)
        .finalize()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Base64 of `sid:timestamp`, without a scheme prefix.
pub fn authorization(account_sid: &str, timestamp: &str) -> String {
    STANDARD.encode(format!("{account_sid}:{timestamp}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::{Mobile, SmsCode};

    use std::time::Duration;

    fn settings() -> CcpSettings {
        CcpSettings {
            base_url: "http://127.0.0.1:1".into(),
            account_sid: "0123456789abcdef0123456789abcdef".into(),
            auth_token: "fedcba9876543210fedcba9876543210".into(),
            app_id: "aaaabbbbccccddddeeeeffff00001111".into(),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn requests_are_signed_with_shanghai_time() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ccp = Ccp::new(settings()).expect("client");
        let job = SendSmsCode {
            mobile: Mobile::parse("13800138000").expect("valid"),
            code: SmsCode::parse("012345").expect("valid"),
            ttl_minutes: 5,
            template_id: "1".into(),
            request_id: uuid::Uuid::nil(),
            created_at: Utc::now(),
        };
        // 2026-11-27 16:30:00 UTC is 2026-11-28 00:30:00 in Shanghai: the date rolls over.
        let now = DateTime::from_timestamp(1_795_797_000, 0).expect("valid");
        let (url, auth, body) = ccp.request_parts(&job, now);
        let ts = "20261128003000";
        assert_eq!(
            url,
            format!(
                "http://127.0.0.1:1/2013-12-26/Accounts/0123456789abcdef0123456789abcdef/SMS/TemplateSMS?sig={}",
                sig(
                    "0123456789abcdef0123456789abcdef",
                    "fedcba9876543210fedcba9876543210",
                    ts
                )
            )
        );
        assert_eq!(
            STANDARD.decode(auth).expect("base64"),
            format!("0123456789abcdef0123456789abcdef:{ts}").into_bytes()
        );
        assert_eq!(
            body,
            json!({"to": "13800138000", "appId": "aaaabbbbccccddddeeeeffff00001111",
                   "templateId": "1", "datas": ["012345", "5"],
                   "reqId": "00000000000000000000000000000000"})
        );
        assert_eq!(sig("a", "b", "c"), "900150983CD24FB0D6963F7D28E17F72");
    }

    #[test]
    fn answers_are_sorted_into_sent_retryable_and_permanent() {
        let ok = StatusCode::OK;
        let ccp = |code: &str| format!(r#"{{"statusCode":"{code}","statusMsg":"m"}}"#);
        let cases = [
            ("success", ok, ccp("000000"), "sent"),
            ("duplicate reqId: already sent", ok, ccp("160054"), "sent"),
            (
                "too many concurrent requests",
                ok,
                ccp("111111"),
                "retryable",
            ),
            ("system error", ok, ccp("160000"), "retryable"),
            ("internal error range", ok, ccp("111042"), "retryable"),
            ("send failed", ok, ccp("160050"), "retryable"),
            (
                "gateway 503",
                StatusCode::SERVICE_UNAVAILABLE,
                "<html>".into(),
                "retryable",
            ),
            (
                "server 500: maybe after accepting",
                StatusCode::INTERNAL_SERVER_ERROR,
                String::new(),
                "ambiguous",
            ),
            (
                "throttled 429",
                StatusCode::TOO_MANY_REQUESTS,
                String::new(),
                "retryable",
            ),
            ("garbled 200", ok, "<html>".into(), "ambiguous"),
            ("JSON without statusCode", ok, "{}".into(), "ambiguous"),
            ("daily cap", ok, ccp("160040"), "permanent"),
            ("cap per template", ok, ccp("160039"), "permanent"),
            ("blacklist", ok, ccp("160034"), "permanent"),
            ("bad number", ok, ccp("160042"), "permanent"),
            ("sig mismatch", ok, ccp("111109"), "permanent"),
            ("timestamp expired", ok, ccp("111106"), "permanent"),
            ("balance", ok, ccp("111142"), "permanent"),
            ("per-number frequency", ok, ccp("160038"), "permanent"),
            (
                "wrong path 404",
                StatusCode::NOT_FOUND,
                String::new(),
                "permanent",
            ),
        ];
        for (why, status, body, want) in cases {
            assert_eq!(classify_response(status, &body).label(), want, "{why}");
        }
        assert_eq!(
            classify_response(ok, &ccp("160040")),
            Attempt::Permanent {
                code: "160040".into(),
                reason: "m".into(),
                scope: Scope::Number,
            }
        );
        let scope = |code: &str| match classify_response(ok, &ccp(code)) {
            Attempt::Permanent { scope, .. } => Some(scope),
            _ => None,
        };
        for number in ["160034", "160038", "160039", "160040", "160042"] {
            assert_eq!(scope(number), Some(Scope::Number), "{number}");
        }
        for account in ["111109", "111106", "111142", "160032", "160055", "113302"] {
            assert_eq!(scope(account), Some(Scope::Account), "{account}");
        }
    }
}
