//! Aliyun SMS (dysmsapi, API 2017-05-25), RPC style with the V2 signature:
//! `POST {base}/` with a form body holding the common parameters (`AccessKeyId`, `Action`,
//! `Format=JSON`, `RegionId`, `SignatureMethod=HMAC-SHA1`, `SignatureNonce` fresh per call,
//! `SignatureVersion=1.0`, `Timestamp` in UTC, `Version`), the action's parameters and
//! `Signature` = base64 HMAC-SHA1, keyed with `secret&`, of
//! `POST&%2F&percentEncode(sorted, percent-encoded k=v pairs joined by &)`.
//!
//! `SendSms` carries `PhoneNumbers`, `SignName`, `TemplateCode`, `TemplateParam`
//! (`{"code":"123456"}`) and `OutId` = the request id (32 hex characters). Aliyun does not
//! de-duplicate: `SendSms` is not idempotent and `OutId` is only echoed. So after a lost
//! answer [`SmsProvider::resolve`] asks `QuerySendDetails` (the number's messages of that day,
//! each with its `OutId`) before anything is sent again.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use shared::jobs::SendSmsCode;

use super::{Attempt, Resolution, Scope, SmsProvider};
use crate::config::AliyunSettings;

/// The API version of every dysmsapi call.
const VERSION: &str = "2017-05-25";
/// dysmsapi is served from one region.
const REGION: &str = "cn-hangzhou";

/// The Aliyun client: one `reqwest::Client` for the process.
pub struct Aliyun {
    settings: AliyunSettings,
    client: reqwest::Client,
}

impl std::fmt::Debug for Aliyun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aliyun")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// RFC 3986 percent-encoding as the POP signature wants it: `A-Za-z0-9-_.~` kept, every other
/// UTF-8 byte as upper-case `%XX` (a space is `%20`, `*` is `%2A`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Base64 HMAC-SHA1 (key `secret&`) of `METHOD&%2F&percentEncode(canonical query)`.
pub fn signature(secret: &str, method: &str, params: &[(String, String)]) -> String {
    use base64::Engine as _;
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let to_sign = format!("{method}&%2F&{}", percent_encode(&query.join("&")));
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Aliyun {
    pub fn new(settings: AliyunSettings) -> anyhow::Result<Self> {
        let client = super::http_client("Aliyun", settings.connect_timeout, settings.timeout)?;
        Ok(Self { settings, client })
    }

    /// The signed parameters of `action` with its own `params`, at `now`, with `nonce`.
    pub fn signed(
        &self,
        action: &str,
        params: &[(&str, &str)],
        now: DateTime<Utc>,
        nonce: &str,
    ) -> Vec<(String, String)> {
        let timestamp = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut all = pairs(&[
            ("AccessKeyId", &self.settings.access_key_id),
            ("Action", action),
            ("Format", "JSON"),
            ("RegionId", REGION),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", nonce),
            ("SignatureVersion", "1.0"),
            ("Timestamp", &timestamp),
            ("Version", VERSION),
        ]);
        all.extend(pairs(params));
        let sig = signature(&self.settings.access_key_secret, "POST", &all);
        all.push(("Signature".to_owned(), sig));
        all
    }

    /// The `SendSms` parameters for `job`.
    pub fn send_params(
        &self,
        job: &SendSmsCode,
        now: DateTime<Utc>,
        nonce: &str,
    ) -> Vec<(String, String)> {
        let template_param = json!({"code": job.code.as_str()}).to_string();
        let out_id = out_id(job);
        self.signed(
            "SendSms",
            &[
                ("PhoneNumbers", job.mobile.as_str()),
                ("SignName", &self.settings.sign_name),
                ("TemplateCode", &self.settings.template_code),
                ("TemplateParam", &template_param),
                ("OutId", &out_id),
            ],
            now,
            nonce,
        )
    }

    async fn call(&self, params: &[(String, String)]) -> Result<Value, Attempt> {
        let body = serde_urlencoded::to_string(params).map_err(|e| Attempt::Permanent {
            code: "encoding".into(),
            reason: e.to_string(),
            scope: Scope::Account,
        })?;
        let request = self
            .client
            .post(format!("{}/", self.settings.base_url))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        let (status, text) = super::post(request).await?;
        // Aliyun answers its own errors as JSON, some with 4xx (signature, unknown key).
        match serde_json::from_str::<Value>(&text) {
            Ok(value) if value["Code"].is_string() => Ok(value),
            _ => Err(super::gateway_status(status).unwrap_or_else(|| {
                if status.is_success() {
                    Attempt::Ambiguous {
                        reason: "answer is not Aliyun's JSON".into(),
                    }
                } else {
                    Attempt::Permanent {
                        code: format!("HTTP {}", status.as_u16()),
                        reason: "unexpected HTTP status from Aliyun".into(),
                        scope: Scope::Account,
                    }
                }
            })),
        }
    }

    /// `QuerySendDetails` for `job`'s number on `date` (`yyyyMMdd`, Shanghai): the `SendStatus`
    /// of the message carrying our `OutId`, if any (1 waiting for the receipt, 2 failed,
    /// 3 delivered).
    async fn query(&self, job: &SendSmsCode, date: &str) -> Result<Option<i64>, String> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let params = self.signed(
            "QuerySendDetails",
            &[
                ("PhoneNumber", job.mobile.as_str()),
                ("SendDate", date),
                ("PageSize", "50"),
                ("CurrentPage", "1"),
            ],
            Utc::now(),
            &nonce,
        );
        let value = self.call(&params).await.map_err(|a| format!("{a:?}"))?;
        if value["Code"] != "OK" {
            return Err(format!("QuerySendDetails answered {}", value["Code"]));
        }
        let ours = out_id(job);
        let found = value["SmsSendDetailDTOs"]["SmsSendDetailDTO"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["OutId"].as_str() == Some(ours.as_str()));
        Ok(found.map(|d| d["SendStatus"].as_i64().unwrap_or(1)))
    }
}

/// Our id in `OutId`: the request id, 32 hex characters.
pub fn out_id(job: &SendSmsCode) -> String {
    job.request_id.simple().to_string()
}

impl SmsProvider for Aliyun {
    fn name(&self) -> &'static str {
        "aliyun"
    }

    async fn send(&self, job: &SendSmsCode) -> Attempt {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        match self.call(&self.send_params(job, Utc::now(), &nonce)).await {
            Ok(value) => classify_code(
                value["Code"].as_str().unwrap_or_default(),
                value["Message"].as_str().unwrap_or_default(),
            ),
            Err(attempt) => attempt,
        }
    }

    /// Ask `QuerySendDetails` for the day the job was created and today (Shanghai dates: they
    /// differ around midnight): a message with our `OutId` that did not fail means sent; none
    /// (or only a failed one) means a new attempt is safe.
    async fn resolve(&self, job: &SendSmsCode) -> Resolution {
        let shanghai = chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
        let mut dates = vec![
            job.created_at
                .with_timezone(&shanghai)
                .format("%Y%m%d")
                .to_string(),
        ];
        let today = Utc::now()
            .with_timezone(&shanghai)
            .format("%Y%m%d")
            .to_string();
        if dates[0] != today {
            dates.push(today);
        }
        for date in dates {
            match self.query(job, &date).await {
                Ok(Some(status)) if status != 2 => return Resolution::Sent,
                Ok(_) => {}
                Err(reason) => return Resolution::Unknown { reason },
            }
        }
        Resolution::NotSent
    }
}

/// Aliyun's codes, as this worker treats them.
///
/// | codes | class |
/// |---|---|
/// | `OK` | sent |
/// | `isp.SYSTEM_ERROR`, `isp.GATEWAY_ERROR`, `Throttling*`, `ServiceUnavailable`, `InternalError`, `SignatureNonceUsed` (a new nonce fixes it) | retryable |
/// | `isv.BUSINESS_LIMIT_CONTROL` (per-number flow control), `isv.DAY_LIMIT_CONTROL`, `isv.MOBILE_NUMBER_ILLEGAL`, `isv.MOBILE_COUNT_OVER_LIMIT` | permanent, the number's |
/// | everything else: `isv.SMS_SIGNATURE_ILLEGAL`, `isv.SMS_TEMPLATE_ILLEGAL`, `isv.TEMPLATE_MISSING_PARAMETERS`, `isv.INVALID_JSON_PARAM`, `isv.INVALID_PARAMETERS`, `isv.PARAM_LENGTH_LIMIT`, `isv.BLACK_KEY_CONTROL_LIMIT` (content), `isv.AMOUNT_NOT_ENOUGH`, `isv.OUT_OF_SERVICE`, `isv.ACCOUNT_ABNORMAL`, `isp.RAM_PERMISSION_DENY`, `SignatureDoesNotMatch`, `InvalidAccessKeyId.*`, `InvalidTimeStamp.*` | permanent, the account's |
pub fn classify_code(code: &str, message: &str) -> Attempt {
    let retryable = matches!(
        code,
        "isp.SYSTEM_ERROR"
            | "isp.GATEWAY_ERROR"
            | "ServiceUnavailable"
            | "InternalError"
            | "SignatureNonceUsed"
    ) || code.starts_with("Throttling");
    let number = matches!(
        code,
        "isv.BUSINESS_LIMIT_CONTROL"
            | "isv.DAY_LIMIT_CONTROL"
            | "isv.MOBILE_NUMBER_ILLEGAL"
            | "isv.MOBILE_COUNT_OVER_LIMIT"
    );
    match code {
        "OK" => Attempt::Sent,
        _ if retryable => Attempt::retryable("Aliyun", code, message),
        _ => Attempt::permanent(code, message, number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Aliyun's published SendSms signature example (dysmsapi "HTTP协议及签名"): AccessKeyId
    /// `testId`, AccessKeySecret `testSecret`, these parameters, GET, give
    /// `zJDF+Lrzhj/ThnlvIToysFRq6t4=`.
    #[test]
    fn reproduces_aliyuns_published_send_sms_signature_example() {
        let params = pairs(&[
            ("AccessKeyId", "testId"),
            ("Action", "SendSms"),
            ("Format", "XML"),
            ("OutId", "123"),
            ("PhoneNumbers", "15300000001"),
            ("RegionId", "cn-hangzhou"),
            ("SignName", "阿里云短信测试专用"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "45e25e9b-0a6f-4070-8c85-2956eda1b466"),
            ("SignatureVersion", "1.0"),
            ("TemplateCode", "SMS_71390007"),
            ("TemplateParam", r#"{"customer":"test"}"#),
            ("Timestamp", "2017-07-12T02:42:19Z"),
            ("Version", "2017-05-25"),
        ]);
        assert_eq!(
            signature("testSecret", "GET", &params),
            "zJDF+Lrzhj/ThnlvIToysFRq6t4="
        );
    }

    /// The RPC signature page's own example (ECS DescribeRegions, secret `testsecret`).
    #[test]
    fn reproduces_aliyuns_published_rpc_signature_example() {
        let params = pairs(&[
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Version", "2014-05-26"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
        ]);
        assert_eq!(
            signature("testsecret", "GET", &params),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn percent_encoding_follows_rfc_3986() {
        assert_eq!(percent_encode("a b*~"), "a%20b%2A~");
        assert_eq!(
            percent_encode("{\"code\":\"1\"}"),
            "%7B%22code%22%3A%221%22%7D"
        );
        assert_eq!(percent_encode("美"), "%E7%BE%8E");
    }

    #[test]
    fn codes_are_sorted_into_sent_retryable_and_permanent_by_scope() {
        assert_eq!(classify_code("OK", "OK"), Attempt::Sent);
        for code in ["isp.SYSTEM_ERROR", "Throttling.User", "SignatureNonceUsed"] {
            assert_eq!(classify_code(code, "m").label(), "retryable", "{code}");
        }
        let scope = |code: &str| match classify_code(code, "m") {
            Attempt::Permanent { scope, .. } => Some(scope),
            _ => None,
        };
        for code in ["isv.BUSINESS_LIMIT_CONTROL", "isv.MOBILE_NUMBER_ILLEGAL"] {
            assert_eq!(scope(code), Some(Scope::Number), "{code}");
        }
        for code in [
            "isv.SMS_SIGNATURE_ILLEGAL",
            "isv.AMOUNT_NOT_ENOUGH",
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId.NotFound",
            "something.new",
        ] {
            assert_eq!(scope(code), Some(Scope::Account), "{code}");
        }
    }
}
