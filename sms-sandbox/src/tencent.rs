//! Tencent Cloud SMS (API 3.0, version 2021-01-11) as the real service checks a request: the
//! `X-TC-*` headers, the TC3-HMAC-SHA256 `Authorization` (canonical request over the signed
//! headers and the body hash, a key derived from the date and the service), a timestamp within
//! five minutes, then the action's JSON body. Pure functions, like [`crate::ccp`].
//!
//! Two actions: `SendSms` (no de-duplication at Tencent; `SessionContext` is echoed in the
//! answer and in the delivery receipts) and `PullSmsSendStatusByPhoneNumber` (the receipts of
//! one number since a time, each with its `SessionContext`).

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The API version of every SMS call.
pub const VERSION: &str = "2021-01-11";
/// The service name in the credential scope.
pub const SERVICE: &str = "sms";
/// A timestamp is accepted this many seconds either side of the server's clock.
pub const TIMESTAMP_WINDOW_SECS: i64 = 300;
/// Numbers one `SendSms` may address.
pub const MAX_RECIPIENTS: usize = 200;
/// Longest `SessionContext`, in bytes.
pub const MAX_SESSION_CONTEXT: usize = 512;
/// The same content to the same number is refused within this many seconds.
pub const SAME_CONTENT_SECS: i64 = 30;

/// The account the sandbox accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub secret_id: String,
    pub secret_key: String,
    pub sdk_app_id: String,
    pub sign_name: String,
    pub template_id: String,
}

/// A request-level error: `{"Response":{"Error":{"Code","Message"},"RequestId"}}`, HTTP 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
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

/// `POST\n/\n\n<name:value\n per signed header>\n<signed;headers>\n<hex sha256(body)>`.
pub fn canonical_request(headers: &[(String, String)], payload: &[u8]) -> String {
    let mut lines = String::new();
    let mut names = Vec::new();
    for (name, value) in headers {
        lines.push_str(&format!(
            "{}:{}\n",
            name.to_ascii_lowercase(),
            value.trim().to_ascii_lowercase()
        ));
        names.push(name.to_ascii_lowercase());
    }
    format!(
        "POST\n/\n\n{lines}\n{}\n{}",
        names.join(";"),
        hex(&Sha256::digest(payload))
    )
}

/// `TC3-HMAC-SHA256\n<timestamp>\n<date>/<service>/tc3_request\n<hex sha256(canonical)>`.
pub fn string_to_sign(timestamp: i64, date: &str, service: &str, canonical: &str) -> String {
    format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    )
}

/// Hex HMAC-SHA256 of `string_to_sign` under the key derived from `TC3<secret>`, the date,
/// the service and `tc3_request`.
pub fn signature(secret_key: &str, date: &str, service: &str, string_to_sign: &str) -> String {
    let k_date = hmac(format!("TC3{secret_key}").as_bytes(), date);
    let k_service = hmac(&k_date, service);
    let k_signing = hmac(&k_service, "tc3_request");
    hex(&hmac(&k_signing, string_to_sign))
}

/// The UTC date of a Unix timestamp, `yyyy-mm-dd`.
pub fn date_of(timestamp: i64) -> Option<String> {
    DateTime::from_timestamp(timestamp, 0).map(|t| t.format("%Y-%m-%d").to_string())
}

/// One request as it arrived: every header (name, value) and the body.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A checked call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SendSms(Send),
    PullStatus { phone_number: String, since: i64 },
}

/// A `SendSms` that passed the request-level checks. Per-number checks (number format, the
/// 30-second same-content limit) are answered in `SendStatusSet`, by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    /// As given: `+86…`, `86…` or 11 digits.
    pub phone_numbers: Vec<String>,
    pub sign_name: String,
    pub template_id: String,
    pub datas: Vec<String>,
    pub session_context: Option<String>,
}

/// Check the signature and headers, then the body, as Tencent does.
pub fn check(account: &Account, req: Request<'_>, now: DateTime<Utc>) -> Result<Action, Rejection> {
    check_signature(account, req, now)?;
    if req.header("X-TC-Version") != Some(VERSION) {
        return Err(reject("NoSuchVersion", "The API version does not exist."));
    }
    if req.header("X-TC-Region").is_none_or(str::is_empty) {
        return Err(reject(
            "MissingParameter",
            "The request is missing a required parameter `Region`.",
        ));
    }
    let body: Value = serde_json::from_slice(req.body)
        .map_err(|_| reject("InvalidParameter", "The request body is not valid JSON."))?;
    match req.header("X-TC-Action") {
        Some("SendSms") => check_send(account, &body).map(Action::SendSms),
        Some("PullSmsSendStatusByPhoneNumber") => check_pull(account, &body),
        _ => Err(reject("InvalidAction", "The requested API does not exist.")),
    }
}

fn signature_failure() -> Rejection {
    reject(
        "AuthFailure.SignatureFailure",
        "The provided credentials could not be validated.",
    )
}

/// `TC3-HMAC-SHA256 Credential=<id>/<date>/<service>/tc3_request, SignedHeaders=<a;b>,
/// Signature=<hex>` split into (credential, signed headers, signature).
fn authorization_fields(auth: &str) -> Option<(&str, &str, &str)> {
    let mut fields = auth.strip_prefix("TC3-HMAC-SHA256 ")?.split(", ");
    let credential = fields.next()?.strip_prefix("Credential=")?;
    let signed = fields.next()?.strip_prefix("SignedHeaders=")?;
    let given = fields.next()?.strip_prefix("Signature=")?;
    Some((credential, signed, given))
}

fn check_signature(
    account: &Account,
    req: Request<'_>,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    let failure = signature_failure;
    let auth = req.header("Authorization").ok_or_else(|| {
        reject(
            "AuthFailure.MFAFailure",
            "The Authorization header is missing.",
        )
    })?;
    let (credential, signed, given) = authorization_fields(auth).ok_or_else(failure)?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [secret_id, date, service, "tc3_request"] = scope[..] else {
        return Err(failure());
    };
    let timestamp: i64 = req
        .header("X-TC-Timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or_else(failure)?;
    if (now.timestamp() - timestamp).abs() > TIMESTAMP_WINDOW_SECS {
        return Err(reject(
            "AuthFailure.SignatureExpire",
            "Request has expired, please check your local time.",
        ));
    }
    if secret_id != account.secret_id {
        return Err(reject(
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found.",
        ));
    }
    let names: Vec<&str> = signed.split(';').collect();
    if service != SERVICE
        || date_of(timestamp).as_deref() != Some(date)
        || !names.contains(&"content-type")
        || !names.contains(&"host")
    {
        return Err(failure());
    }
    let headers: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.to_string(), req.header(n).unwrap_or_default().to_owned()))
        .collect();
    let canonical = canonical_request(&headers, req.body);
    let expected = signature(
        &account.secret_key,
        date,
        service,
        &string_to_sign(timestamp, date, service, &canonical),
    );
    if given != expected {
        return Err(failure());
    }
    Ok(())
}

fn strings(value: &Value, field: &str) -> Result<Vec<String>, Rejection> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                reject(
                    "InvalidParameter",
                    format!("{field} must be a list of strings."),
                )
            }),
        Some(_) => Err(reject(
            "InvalidParameter",
            format!("{field} must be a list of strings."),
        )),
    }
}

fn check_send(account: &Account, body: &Value) -> Result<Send, Rejection> {
    let phone_numbers = strings(body, "PhoneNumberSet")?;
    if phone_numbers.is_empty() {
        return Err(reject(
            "MissingParameter",
            "The request is missing a required parameter `PhoneNumberSet`.",
        ));
    }
    if phone_numbers.len() > MAX_RECIPIENTS {
        return Err(reject(
            "LimitExceeded.PhoneNumberCountLimit",
            "The number of phone numbers exceeds 200.",
        ));
    }
    if body["SmsSdkAppId"].as_str() != Some(account.sdk_app_id.as_str()) {
        return Err(reject(
            "InvalidParameterValue.SdkAppIdNotExist",
            "The SdkAppId does not exist.",
        ));
    }
    if body["SignName"].as_str() != Some(account.sign_name.as_str()) {
        return Err(reject(
            "FailedOperation.SignatureIncorrectOrUnapproved",
            "签名未审批或格式错误",
        ));
    }
    if body["TemplateId"].as_str() != Some(account.template_id.as_str()) {
        return Err(reject(
            "FailedOperation.TemplateIncorrectOrUnapproved",
            "模板未审批或内容不匹配",
        ));
    }
    let session_context = body["SessionContext"].as_str().filter(|s| !s.is_empty());
    if session_context.is_some_and(|s| s.len() > MAX_SESSION_CONTEXT) {
        return Err(reject(
            "InvalidParameterValue",
            "SessionContext exceeds 512 bytes.",
        ));
    }
    Ok(Send {
        phone_numbers,
        sign_name: account.sign_name.clone(),
        template_id: account.template_id.clone(),
        datas: strings(body, "TemplateParamSet")?,
        session_context: session_context.map(str::to_owned),
    })
}

fn check_pull(account: &Account, body: &Value) -> Result<Action, Rejection> {
    if body["SmsSdkAppId"].as_str() != Some(account.sdk_app_id.as_str()) {
        return Err(reject(
            "InvalidParameterValue.SdkAppIdNotExist",
            "The SdkAppId does not exist.",
        ));
    }
    let phone_number = body["PhoneNumber"].as_str().unwrap_or_default().to_owned();
    let since = body["BeginTime"].as_i64().ok_or_else(|| {
        reject(
            "MissingParameter",
            "The request is missing a required parameter `BeginTime`.",
        )
    })?;
    Ok(Action::PullStatus {
        phone_number,
        since,
    })
}

/// The 11-digit mainland number of a `PhoneNumberSet` entry, if it is one.
pub fn mainland(number: &str) -> Option<&str> {
    let digits = number
        .strip_prefix("+86")
        .or_else(|| number.strip_prefix("86").filter(|d| d.len() == 11))
        .unwrap_or(number);
    crate::ccp::is_mobile(digits).then_some(digits)
}

/// The `Message` of a code we answer.
pub fn message_for(code: &str) -> &'static str {
    match code {
        "LimitExceeded.PhoneNumberThirtySecondLimit" => {
            "单个手机号30秒内下发短信条数超过设定的上限"
        }
        "LimitExceeded.PhoneNumberDailyLimit" => "单个手机号日下发短信条数超过设定的上限",
        "FailedOperation.PhoneNumberInBlacklist" => "手机号在免打扰名单库中",
        "InvalidParameterValue.IncorrectPhoneNumber" => "手机号格式错误",
        "FailedOperation.InsufficientBalanceInSmsPackage" => "套餐包余量不足",
        "InternalError.Timeout" => "请求下发短信超时",
        "InternalError.OtherError" => "其他错误",
        "RequestLimitExceeded" => "请求的次数超过了频率限制",
        _ => "短信发送失败",
    }
}

/// Whether `code` is answered per number (in `SendStatusSet`) rather than for the request.
pub fn is_per_number(code: &str) -> bool {
    code.starts_with("LimitExceeded.PhoneNumber")
        || code.starts_with("FailedOperation.PhoneNumber")
        || code == "InvalidParameterValue.IncorrectPhoneNumber"
        || code == "FailedOperation.ContainSensitiveWord"
        || code == "FailedOperation.InsufficientBalanceInSmsPackage"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tencent's published TC3-HMAC-SHA256 example (API 3.0 "签名方法 v3", CVM
    /// DescribeInstances): SecretKey `Gu5t9xGARNpq86cd98joQYCN3EXAMPLE`, timestamp
    /// 1551113065, this payload, signed headers content-type and host.
    #[test]
    fn reproduces_tencents_published_tc3_example() {
        let payload = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let headers = vec![
            (
                "content-type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            ),
            ("host".to_owned(), "cvm.tencentcloudapi.com".to_owned()),
        ];
        let canonical = canonical_request(&headers, payload);
        assert_eq!(
            canonical,
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        let date = date_of(1_551_113_065).expect("valid");
        assert_eq!(date, "2019-02-25");
        let sts = string_to_sign(1_551_113_065, &date, "cvm", &canonical);
        assert_eq!(
            signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &date, "cvm", &sts),
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn mainland_numbers_are_read_with_or_without_the_country_code() {
        assert_eq!(mainland("+8613800138000"), Some("13800138000"));
        assert_eq!(mainland("8613800138000"), Some("13800138000"));
        assert_eq!(mainland("13800138000"), Some("13800138000"));
        assert_eq!(mainland("+14155550100"), None);
    }
}
