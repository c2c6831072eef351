//! Tencent Cloud SMS (API 3.0, version 2021-01-11) with TC3-HMAC-SHA256: `POST {base}/` with
//! `Content-Type: application/json; charset=utf-8`, `Host`, `X-TC-Action`, `X-TC-Version`,
//! `X-TC-Timestamp` (Unix seconds), `X-TC-Region` and
//! `Authorization: TC3-HMAC-SHA256 Credential=<SecretId>/<date>/sms/tc3_request,
//! SignedHeaders=content-type;host, Signature=<hex>`, where the signature is an HMAC-SHA256
//! chain (`TC3<SecretKey>` → UTC date → `sms` → `tc3_request`) over the string to sign, which
//! hashes the canonical request (method, `/`, empty query, the two signed headers, the body's
//! SHA-256).
//!
//! `SendSms` carries `PhoneNumberSet: ["+86…"]`, `SmsSdkAppId`, `SignName`, `TemplateId`,
//! `TemplateParamSet: [code, minutes]` and `SessionContext` = the request id. Tencent does not
//! de-duplicate; it echoes `SessionContext` in the answer and in the delivery receipts. So after
//! a lost answer [`SmsProvider::resolve`] pulls the number's receipts
//! (`PullSmsSendStatusByPhoneNumber`) and looks for our `SessionContext`; without one it cannot
//! tell (receipts arrive seconds to minutes late), and nothing is sent again.

use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::jobs::SendSmsCode;

use super::{Attempt, Resolution, Scope, SmsProvider};
use crate::config::TencentSettings;

/// The API version of every SMS call.
const VERSION: &str = "2021-01-11";
/// The one content type the signature covers (it must be sent byte for byte).
const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The Tencent client: one `reqwest::Client` for the process.
pub struct Tencent {
    settings: TencentSettings,
    client: reqwest::Client,
    /// The `Host` header reqwest sends for the base URL (host, and port if not the default).
    host: String,
}

impl std::fmt::Debug for Tencent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tencent")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(msg.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The TC3 signature of a POST with `payload`, signed headers content-type and host, for
/// `service` at `timestamp`: (credential scope, hex signature).
pub fn sign(
    secret_key: &str,
    service: &str,
    host: &str,
    timestamp: i64,
    payload: &[u8],
) -> (String, String) {
    let canonical = format!(
        "POST\n/\n\ncontent-type:{CONTENT_TYPE}\nhost:{host}\n\ncontent-type;host\n{}",
        hex(&Sha256::digest(payload))
    );
    let date = chrono::DateTime::from_timestamp(timestamp, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string();
    let scope = format!("{date}/{service}/tc3_request");
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("TC3{secret_key}").as_bytes(), &date);
    let k_signing = hmac(&hmac(&k_date, service), "tc3_request");
    (scope, hex(&hmac(&k_signing, &to_sign)))
}

impl Tencent {
    pub fn new(settings: TencentSettings) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(&settings.base_url)
            .map_err(|e| anyhow::anyhow!("TENCENT_BASE_URL is not a URL: {e}"))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => anyhow::bail!("TENCENT_BASE_URL has no host"),
        };
        let client = super::http_client("Tencent", settings.connect_timeout, settings.timeout)?;
        Ok(Self {
            settings,
            client,
            host,
        })
    }

    /// The `SendSms` body for `job`.
    pub fn send_body(&self, job: &SendSmsCode) -> Value {
        let s = &self.settings;
        json!({
            "PhoneNumberSet": [format!("+86{}", job.mobile.as_str())],
            "SmsSdkAppId": s.sdk_app_id,
            "SignName": s.sign_name,
            "TemplateId": s.template_id,
            "TemplateParamSet": [job.code.as_str(), job.ttl_minutes.to_string()],
            "SessionContext": session_context(job),
        })
    }

    /// The `Authorization` header for `payload` at `timestamp`.
    pub fn authorization(&self, timestamp: i64, payload: &[u8]) -> String {
        let (scope, signature) = sign(
            &self.settings.secret_key,
            "sms",
            &self.host,
            timestamp,
            payload,
        );
        format!(
            "TC3-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=content-type;host, Signature={signature}",
            self.settings.secret_id
        )
    }

    /// Call `action` with `body`: the `Response` object, or the attempt a failure amounts to.
    async fn call(&self, action: &str, body: &Value) -> Result<Value, Attempt> {
        let payload = body.to_string();
        let timestamp = Utc::now().timestamp();
        let request = self
            .client
            .post(format!("{}/", self.settings.base_url))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("X-TC-Action", action)
            .header("X-TC-Version", VERSION)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.settings.region)
            .header(
                reqwest::header::AUTHORIZATION,
                self.authorization(timestamp, payload.as_bytes()),
            )
            .body(payload);
        let (status, text) = super::post(request).await?;
        if let Some(attempt) = super::gateway_status(status) {
            return Err(attempt);
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(mut value) if value["Response"].is_object() => Ok(value["Response"].take()),
            _ if status.is_success() => Err(Attempt::Ambiguous {
                reason: "answer is not Tencent's JSON".into(),
            }),
            _ => Err(Attempt::Permanent {
                code: format!("HTTP {}", status.as_u16()),
                reason: "unexpected HTTP status from Tencent".into(),
                scope: Scope::Account,
            }),
        }
    }
}

/// Our id in `SessionContext`: the request id, 32 hex characters.
pub fn session_context(job: &SendSmsCode) -> String {
    job.request_id.simple().to_string()
}

impl SmsProvider for Tencent {
    fn name(&self) -> &'static str {
        "tencent"
    }

    async fn send(&self, job: &SendSmsCode) -> Attempt {
        let response = match self.call("SendSms", &self.send_body(job)).await {
            Ok(r) => r,
            Err(attempt) => return attempt,
        };
        // A request-level error, else the one number's status.
        let answer = if response["Error"].is_object() {
            &response["Error"]
        } else {
            &response["SendStatusSet"][0]
        };
        match answer["Code"].as_str() {
            Some(code) => classify_code(code, answer["Message"].as_str().unwrap_or_default()),
            None => Attempt::Ambiguous {
                reason: "answer has no status for the number".into(),
            },
        }
    }

    /// Look for our `SessionContext` among the number's receipts since the job was created.
    async fn resolve(&self, job: &SendSmsCode) -> Resolution {
        let body = json!({
            "BeginTime": job.created_at.timestamp() - 60,
            "EndTime": Utc::now().timestamp() + 60,
            "Offset": 0,
            "Limit": 100,
            "PhoneNumber": format!("+86{}", job.mobile.as_str()),
            "SmsSdkAppId": self.settings.sdk_app_id,
        });
        let response = match self.call("PullSmsSendStatusByPhoneNumber", &body).await {
            Ok(r) if r["Error"].is_object() => {
                return Resolution::Unknown {
                    reason: format!("receipt pull answered {}", r["Error"]["Code"]),
                };
            }
            Ok(r) => r,
            Err(a) => {
                return Resolution::Unknown {
                    reason: format!("{a:?}"),
                };
            }
        };
        let ours = session_context(job);
        let found = response["PullSmsSendStatusSet"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["SessionContext"].as_str() == Some(ours.as_str()));
        if found {
            Resolution::Sent
        } else {
            Resolution::Unknown {
                reason: "no receipt with our SessionContext yet".into(),
            }
        }
    }
}

/// Tencent's codes (request-level `Error.Code` or the number's `SendStatusSet[].Code`), as this
/// worker treats them.
///
/// | codes | class |
/// |---|---|
/// | `Ok` | sent |
/// | `InternalError.OtherError`, `InternalError.RequestTimeException`, `InternalError.RestApiInterfaceNotExist`, `RequestLimitExceeded*`, `FailedOperation.FailResolvePacket` | retryable |
/// | `InternalError.Timeout` (Tencent timed out sending it on: it may have gone out) | ambiguous |
/// | `LimitExceeded.PhoneNumber*` (30-second, hourly, daily, same-content caps), `LimitExceeded.DeliveryFrequencyLimit`, `FailedOperation.PhoneNumberInBlacklist`, `FailedOperation.PhoneNumberParseFail`, `InvalidParameterValue.IncorrectPhoneNumber` | permanent, the number's |
/// | everything else: `AuthFailure.*`, `FailedOperation.SignatureIncorrectOrUnapproved`, `FailedOperation.TemplateIncorrectOrUnapproved`, `FailedOperation.TemplateParamSetNotMatchApprovedTemplate`, `FailedOperation.InsufficientBalanceInSmsPackage`, `FailedOperation.ContainSensitiveWord`, `InvalidParameterValue.*`, `UnauthorizedOperation.*` | permanent, the account's |
pub fn classify_code(code: &str, message: &str) -> Attempt {
    let retryable = matches!(
        code,
        "InternalError.OtherError"
            | "InternalError.RequestTimeException"
            | "InternalError.RestApiInterfaceNotExist"
            | "FailedOperation.FailResolvePacket"
    ) || code.starts_with("RequestLimitExceeded");
    let number = code.starts_with("LimitExceeded.PhoneNumber")
        || matches!(
            code,
            "LimitExceeded.DeliveryFrequencyLimit"
                | "FailedOperation.PhoneNumberInBlacklist"
                | "FailedOperation.PhoneNumberParseFail"
                | "InvalidParameterValue.IncorrectPhoneNumber"
        );
    match code {
        "Ok" => Attempt::Sent,
        "InternalError.Timeout" => Attempt::Ambiguous {
            reason: format!("Tencent {code} {message}"),
        },
        _ if retryable => Attempt::retryable("Tencent", code, message),
        _ => Attempt::permanent(code, message, number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tencent's published TC3-HMAC-SHA256 example (API 3.0 "签名方法 v3", CVM
    /// DescribeInstances): SecretKey `Gu5t9xGARNpq86cd98joQYCN3EXAMPLE`, timestamp 1551113065,
    /// this payload, host `cvm.tencentcloudapi.com`.
    #[test]
    fn reproduces_tencents_published_tc3_example() {
        let payload = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let (scope, signature) = sign(
            "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
            "cvm",
            "cvm.tencentcloudapi.com",
            1_551_113_065,
            payload,
        );
        assert_eq!(scope, "2019-02-25/cvm/tc3_request");
        assert_eq!(
            signature,
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn codes_are_sorted_into_sent_retryable_ambiguous_and_permanent_by_scope() {
        assert_eq!(classify_code("Ok", "send success"), Attempt::Sent);
        assert_eq!(
            classify_code("InternalError.Timeout", "m").label(),
            "ambiguous"
        );
        for code in ["InternalError.OtherError", "RequestLimitExceeded"] {
            assert_eq!(classify_code(code, "m").label(), "retryable", "{code}");
        }
        let scope = |code: &str| match classify_code(code, "m") {
            Attempt::Permanent { scope, .. } => Some(scope),
            _ => None,
        };
        for code in [
            "FailedOperation.PhoneNumberInBlacklist",
            "LimitExceeded.PhoneNumberThirtySecondLimit",
            "LimitExceeded.PhoneNumberDailyLimit",
            "InvalidParameterValue.IncorrectPhoneNumber",
        ] {
            assert_eq!(scope(code), Some(Scope::Number), "{code}");
        }
        for code in [
            "AuthFailure.SignatureFailure",
            "FailedOperation.InsufficientBalanceInSmsPackage",
            "FailedOperation.TemplateIncorrectOrUnapproved",
        ] {
            assert_eq!(scope(code), Some(Scope::Account), "{code}");
        }
    }
}
