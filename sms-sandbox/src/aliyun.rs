//! Aliyun SMS (dysmsapi, API version 2017-05-25) as the real service checks a request: the RPC
//! common parameters, the V2 signature (HMAC-SHA1 over the sorted, percent-encoded
//! parameters), the timestamp window, the one-time `SignatureNonce`, then the action's own
//! parameters. Pure functions; the HTTP handler in `routes` feeds them and keeps the records.
//!
//! Two actions: `SendSms` (not idempotent at Aliyun: two equal requests are two messages;
//! `OutId` is only echoed) and `QuerySendDetails` (what was sent to one number on one day,
//! with the `OutId` each message carried), which a client uses after a lost answer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::Sha1;

/// The API version of every dysmsapi call.
pub const VERSION: &str = "2017-05-25";
/// A `Timestamp` is accepted this long either side of the server's clock.
pub const TIMESTAMP_WINDOW: Duration = Duration::minutes(15);
/// Numbers one `SendSms` may address.
pub const MAX_RECIPIENTS: usize = 1000;
/// Longest `OutId`.
pub const MAX_OUT_ID_LEN: usize = 256;
/// Default flow control for verification codes, per number and sign name: 1 a minute,
/// 5 an hour, 10 a day (exceeding any answers `isv.BUSINESS_LIMIT_CONTROL`).
pub const FLOW_LIMITS: [(Duration, usize, &str); 3] = [
    (Duration::minutes(1), 1, "触发分钟级流控Permits:1"),
    (Duration::hours(1), 5, "触发小时级流控Permits:5"),
    (Duration::days(1), 10, "触发天级流控Permits:10"),
];

/// The account the sandbox accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub sign_name: String,
    pub template_code: String,
}

/// An Aliyun error answer: HTTP status, `Code`, `Message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub http_status: u16,
    pub code: &'static str,
    pub message: String,
}

fn reject(http_status: u16, code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        http_status,
        code,
        message: message.into(),
    }
}

/// A business refusal (HTTP 200 with a `Code` other than `OK`).
fn refuse(code: &'static str, message: impl Into<String>) -> Rejection {
    reject(200, code, message)
}

/// RFC 3986 percent-encoding as Aliyun's POP signature wants it: `A-Za-z0-9-_.~` kept, every
/// other UTF-8 byte as `%XX` (upper case), so a space is `%20` and `*` is `%2A`.
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

/// `METHOD&%2F&percentEncode(sorted k=v pairs joined by &)`, every parameter but `Signature`.
pub fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    pairs.sort();
    let canonical: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical.join("&"))
    )
}

/// Base64 of HMAC-SHA1 keyed with `secret + "&"` over [`string_to_sign`].
pub fn signature(secret: &str, method: &str, params: &[(String, String)]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(string_to_sign(method, params).as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A checked call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SendSms(Send),
    QuerySendDetails(Query),
}

/// A `SendSms` that passed every check (flow control is the caller's: it needs the records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub to: Vec<String>,
    pub sign_name: String,
    pub template_code: String,
    /// The values of `TemplateParam`, in its order (for a code template: `[code]`).
    pub datas: Vec<String>,
    pub out_id: Option<String>,
}

/// A `QuerySendDetails` that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub phone_number: String,
    /// `yyyyMMdd`, Shanghai date.
    pub send_date: String,
    pub page_size: usize,
    pub current_page: usize,
}

/// Check one call the way Aliyun does: common parameters, timestamp, account, signature, nonce
/// (`nonce_unused` tells whether a nonce is new and remembers it), then the action.
pub fn check(
    account: &Account,
    method: &str,
    params: &[(String, String)],
    now: DateTime<Utc>,
    nonce_unused: impl FnOnce(&str) -> bool,
) -> Result<Action, Rejection> {
    let get = |k: &str| param(params, k);
    check_common(params, now)?;
    if get("AccessKeyId") != Some(account.access_key_id.as_str()) {
        return Err(reject(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ));
    }
    if get("Signature") != Some(signature(&account.access_key_secret, method, params).as_str()) {
        return Err(reject(
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        ));
    }
    if !nonce_unused(get("SignatureNonce").unwrap_or_default()) {
        return Err(reject(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    match get("Action") {
        Some("SendSms") => check_send(account, get).map(Action::SendSms),
        Some("QuerySendDetails") => check_query(get).map(Action::QuerySendDetails),
        _ => Err(reject(
            404,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        )),
    }
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, v)| v.as_str())
}

/// The common parameters: present, the signature method and API version we speak, a
/// timestamp inside the window.
fn check_common(params: &[(String, String)], now: DateTime<Utc>) -> Result<(), Rejection> {
    let get = |k: &str| param(params, k);
    for name in [
        "AccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureNonce",
        "Timestamp",
        "Action",
        "Version",
    ] {
        if get(name).is_none_or(str::is_empty) {
            return Err(reject(
                400,
                "MissingParameter",
                format!(
                    "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
                ),
            ));
        }
    }
    if get("SignatureMethod") != Some("HMAC-SHA1") || get("SignatureVersion") != Some("1.0") {
        return Err(reject(
            400,
            "InvalidSignatureMethod",
            "Specified signature method is not valid.",
        ));
    }
    if get("Version") != Some(VERSION) {
        return Err(reject(
            400,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        ));
    }
    check_timestamp(get("Timestamp").unwrap_or_default(), now)
}

/// `yyyy-MM-ddTHH:mm:ssZ` (UTC), within [`TIMESTAMP_WINDOW`] of `now`.
fn check_timestamp(ts: &str, now: DateTime<Utc>) -> Result<(), Rejection> {
    let sent = NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%SZ")
        .map_err(|_| {
            reject(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        })?
        .and_utc();
    if (now - sent).abs() > TIMESTAMP_WINDOW {
        return Err(reject(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    Ok(())
}

fn check_send<'a>(
    account: &Account,
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<Send, Rejection> {
    let numbers = get("PhoneNumbers")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            reject(
                400,
                "MissingPhoneNumbers",
                "PhoneNumbers is mandatory for this action.",
            )
        })?;
    let to: Vec<String> = numbers.split(',').map(|s| s.trim().to_owned()).collect();
    if to.len() > MAX_RECIPIENTS {
        return Err(refuse(
            "isv.MOBILE_COUNT_OVER_LIMIT",
            "手机号码数量超过限制",
        ));
    }
    if !to.iter().all(|m| crate::ccp::is_mobile(m)) {
        return Err(refuse("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"));
    }
    if get("SignName") != Some(account.sign_name.as_str()) {
        return Err(refuse(
            "isv.SMS_SIGNATURE_ILLEGAL",
            "该账号下找不到对应签名",
        ));
    }
    if get("TemplateCode") != Some(account.template_code.as_str()) {
        return Err(refuse("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板"));
    }
    let datas = template_values(get("TemplateParam").unwrap_or_default())?;
    let out_id = get("OutId").filter(|s| !s.is_empty());
    if out_id.is_some_and(|o| o.len() > MAX_OUT_ID_LEN) {
        return Err(refuse("isv.PARAM_LENGTH_LIMIT", "参数超出长度限制"));
    }
    Ok(Send {
        to,
        sign_name: account.sign_name.clone(),
        template_code: account.template_code.clone(),
        datas,
        out_id: out_id.map(str::to_owned),
    })
}

/// The values of a `TemplateParam` JSON object (Aliyun takes only string values).
fn template_values(text: &str) -> Result<Vec<String>, Rejection> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let invalid = || refuse("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值");
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map
            .values()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

fn check_query<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Query, Rejection> {
    let invalid = |name: &str| {
        reject(
            400,
            "InvalidParameter",
            format!("Specified parameter {name} is not valid."),
        )
    };
    let phone_number = get("PhoneNumber")
        .filter(|m| crate::ccp::is_mobile(m))
        .ok_or_else(|| invalid("PhoneNumber"))?;
    let send_date = get("SendDate")
        .filter(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| invalid("SendDate"))?;
    let page_size = get("PageSize")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| (1..=50).contains(p))
        .ok_or_else(|| invalid("PageSize"))?;
    let current_page = get("CurrentPage")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p >= 1)
        .ok_or_else(|| invalid("CurrentPage"))?;
    Ok(Query {
        phone_number: phone_number.to_owned(),
        send_date: send_date.to_owned(),
        page_size,
        current_page,
    })
}

/// The `Message` of an injected business code.
pub fn message_for(code: &str) -> &'static str {
    match code {
        "isp.SYSTEM_ERROR" => "系统错误",
        "isv.BUSINESS_LIMIT_CONTROL" => "触发分钟级流控Permits:1",
        "isv.MOBILE_NUMBER_ILLEGAL" => "非法手机号",
        "isv.BLACK_KEY_CONTROL_LIMIT" => "黑名单管控",
        "isv.AMOUNT_NOT_ENOUGH" => "账户余额不足",
        "isv.OUT_OF_SERVICE" => "业务停机",
        "isv.SMS_SIGNATURE_ILLEGAL" => "该账号下找不到对应签名",
        c if c.starts_with("Throttling") => "Request was denied due to request throttling.",
        _ => "短信发送失败",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Aliyun's published SendSms signature example (dysmsapi "HTTP协议及签名" page): these
    /// parameters, AccessKeySecret `testSecret`, GET, give `zJDF+Lrzhj/ThnlvIToysFRq6t4=`.
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
        assert!(string_to_sign("GET", &params).starts_with(
            "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123"
        ));
        assert_eq!(
            signature("testSecret", "GET", &params),
            "zJDF+Lrzhj/ThnlvIToysFRq6t4="
        );
    }

    fn account() -> Account {
        Account {
            access_key_id: "LTAIkey".into(),
            access_key_secret: "secret".into(),
            sign_name: "美多商城".into(),
            template_code: "SMS_1".into(),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_773_600, 0).expect("valid")
    }

    fn signed(mut params: Vec<(String, String)>) -> Vec<(String, String)> {
        let sig = signature("secret", "POST", &params);
        params.push(("Signature".into(), sig));
        params
    }

    fn send_params(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p = pairs(&[
            ("AccessKeyId", "LTAIkey"),
            ("Action", "SendSms"),
            ("Format", "JSON"),
            ("RegionId", "cn-hangzhou"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "n1"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2026-11-27T10:00:00Z"),
            ("Version", VERSION),
            ("PhoneNumbers", "13800138000"),
            ("SignName", "美多商城"),
            ("TemplateCode", "SMS_1"),
            ("TemplateParam", r#"{"code":"123456"}"#),
            ("OutId", "abc"),
        ]);
        for (k, v) in extra {
            p.retain(|(name, _)| name != k);
            p.push(((*k).to_owned(), (*v).to_owned()));
        }
        p
    }

    #[test]
    fn a_signed_send_is_accepted_and_each_fault_gets_aliyuns_code() {
        let ok = check(&account(), "POST", &signed(send_params(&[])), now(), |_| {
            true
        });
        assert_eq!(
            ok,
            Ok(Action::SendSms(Send {
                to: vec!["13800138000".into()],
                sign_name: "美多商城".into(),
                template_code: "SMS_1".into(),
                datas: vec!["123456".into()],
                out_id: Some("abc".into()),
            }))
        );
        let code = |params: Vec<(String, String)>| {
            check(&account(), "POST", &params, now(), |_| true)
                .map(|_| "OK")
                .unwrap_or_else(|r| r.code)
        };
        let mut unsigned = send_params(&[]);
        unsigned.push(("Signature".into(), "bad".into()));
        assert_eq!(code(unsigned), "SignatureDoesNotMatch");
        assert_eq!(code(send_params(&[])), "MissingParameter");
        assert_eq!(
            code(signed(send_params(&[(
                "Timestamp",
                "2026-11-27T09:44:59Z"
            )]))),
            "InvalidTimeStamp.Expired"
        );
        assert_eq!(
            code(signed(send_params(&[("Timestamp", "20261127100000")]))),
            "InvalidTimeStamp.Format"
        );
        assert_eq!(
            code(signed(send_params(&[("AccessKeyId", "other")]))),
            "InvalidAccessKeyId.NotFound"
        );
        assert_eq!(
            code(signed(send_params(&[("PhoneNumbers", "1234")]))),
            "isv.MOBILE_NUMBER_ILLEGAL"
        );
        assert_eq!(
            code(signed(send_params(&[("SignName", "别人")]))),
            "isv.SMS_SIGNATURE_ILLEGAL"
        );
        assert_eq!(
            code(signed(send_params(&[("TemplateCode", "SMS_2")]))),
            "isv.SMS_TEMPLATE_ILLEGAL"
        );
        assert_eq!(
            code(signed(send_params(&[("TemplateParam", "123456")]))),
            "isv.INVALID_JSON_PARAM"
        );
        assert_eq!(
            code(signed(send_params(&[("Version", "2016-09-27")]))),
            "InvalidVersion"
        );
        let reused = check(&account(), "POST", &signed(send_params(&[])), now(), |_| {
            false
        });
        assert_eq!(reused.map_err(|r| r.code), Err("SignatureNonceUsed"));
    }
}
