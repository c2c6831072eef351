//! The CCP (容联云 / Yuntongxun) `TemplateSMS` request as the real service checks it
//! (docs/providers.md): the URL shape, the `sig` query parameter, the `Authorization` header, the
//! timestamp and the JSON body. Pure functions, so the rules are unit-tested without a server,
//! plus the signing helpers a client (and a test) needs to build a valid request.
//!
//! Error codes and texts are CCP's own (from the error tables of the official SDK copies).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, FixedOffset, NaiveDateTime, Utc};
use md5::{Digest, Md5};
use serde_json::Value;

/// The REST version segment of every CCP URL.
pub const VERSION: &str = "2013-12-26";
/// A timestamp is accepted this long either side of the server's clock ("有效时间为24小时").
pub const TIMESTAMP_WINDOW: Duration = Duration::hours(24);
/// Numbers a single request may address (160048 above this).
pub const MAX_RECIPIENTS: usize = 200;
/// Longest `reqId` accepted: CCP documents at most 32 letters and digits and answers 160055
/// otherwise (so a hyphenated 36-character UUID is refused, as in production).
pub const MAX_REQ_ID_LEN: usize = 32;

/// A CCP status code with its text, answered as `{"statusCode": .., "statusMsg": ..}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub msg: &'static str,
}

macro_rules! codes {
    ($($name:ident = $code:literal, $msg:literal;)*) => {
        $(pub const $name: Rejection = Rejection { code: $code, msg: $msg };)*
    };
}

codes! {
    BAD_ACCOUNT_FORMAT = "111100", "请求URL账号格式不正确";
    AUTH_EMPTY = "111101", "请求包头Authorization参数为空";
    AUTH_NOT_BASE64 = "111102", "请求包头Authorization参数Base64解码失败";
    AUTH_BAD_FORMAT = "111103", "请求包头Authorization参数解码后格式有误";
    AUTH_NO_ACCOUNT = "111104", "请求包头Authorization参数解码后账户ID为空";
    AUTH_NO_TIMESTAMP = "111105", "请求包头Authorization参数解码后时间戳为空";
    TIMESTAMP_EXPIRED = "111106", "请求包头Authorization参数解码后时间戳过期";
    ACCOUNT_MISMATCH = "111107", "请求包头Authorization参数中账户ID跟请求地址中的账户ID不一致";
    SIG_EMPTY = "111108", "请求地址Sig参数为空";
    SIG_MISMATCH = "111109", "请求地址Sig校验失败";
    BAD_VERSION = "111110", "请求地址SoftVersion参数有误";
    BUSY = "111111", "超过规定的并发数";
    TIMESTAMP_FORMAT = "111113", "请求包头Authorization参数中时间戳格式有误，请参考yyyyMMddHHmmss";
    NO_SUCH_ACCOUNT = "111141", "主账户不存在";
    APP_ID_EMPTY = "111169", "应用ID为空";
    NO_SUCH_APP = "111181", "应用不存在";
    SYSTEM_ERROR = "160000", "系统错误";
    BODY_EMPTY = "160030", "请求包体为空";
    BODY_UNPARSABLE = "160031", "参数解析失败";
    TEMPLATE_INVALID = "160032", "短信模板无效";
    NUMBER_FORMAT = "160042", "号码格式有误";
    NUMBER_EMPTY = "160044", "发送号码为空";
    TOO_MANY_NUMBERS = "160048", "号码数超200限制";
    DATAS_FORMAT = "160052", "模板变量格式有误";
    DUPLICATE_REQUEST = "160054", "请求重复";
    REQ_ID_TOO_LONG = "160055", "请求reqId超长";
    TEMPLATE_ID_NOT_NUMERIC = "160057", "短信模板ID要求为数字";
    TEST_TEMPLATE_NOT_NUMERIC = "160069", "测试模板变量非数字";
}

/// The text CCP uses for a status code we know, for injected failures.
pub fn message_for(code: &str) -> &'static str {
    match code {
        "111111" => BUSY.msg,
        "160000" => SYSTEM_ERROR.msg,
        "160034" => "号码黑名单",
        "160038" => "短信验证码发送过频繁",
        "160039" => "发送数量超出同模板同号天发送次数上限",
        "160040" => "验证码超出同模板同号码天发送上限",
        "160041" => "通知超出同模板同号码天发送上限",
        "160042" => NUMBER_FORMAT.msg,
        "160050" | "160063" | "160064" => "短信发送失败",
        "160054" => DUPLICATE_REQUEST.msg,
        "111142" => "主账户余额不足",
        c if c.starts_with("1110") => "内部错误",
        _ => "短信发送失败",
    }
}

/// The account a sandbox (or a client) works with: three 32-character hex strings in production.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub account_sid: &'a str,
    pub auth_token: &'a str,
    pub app_id: &'a str,
}

/// `sig` = upper-case hex MD5 of account SID + auth token + timestamp.
pub fn sig(account_sid: &str, auth_token: &str, timestamp: &str) -> String {
    let digest = Md5::new()
        .chain_update(account_sid)
        .chain_update(auth_token)
        .chain_update(timestamp)
        .finalize();
    digest.iter().map(|b| format!("{b:02X}")).collect()
}

/// `Authorization` = plain base64 of `sid:timestamp` (no "Basic " prefix).
pub fn authorization(account_sid: &str, timestamp: &str) -> String {
    STANDARD.encode(format!("{account_sid}:{timestamp}"))
}

/// China Standard Time (Asia/Shanghai has had no daylight saving since 1991: a fixed +08:00).
pub fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// The CCP timestamp for `now`: `yyyyMMddHHmmss` in Asia/Shanghai time.
pub fn timestamp(now: DateTime<Utc>) -> String {
    now.with_timezone(&shanghai())
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// One TemplateSMS request as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The `{version}` path segment.
    pub version: &'a str,
    /// The `{accountSid}` path segment.
    pub account_sid: &'a str,
    /// The `sig` query parameter.
    pub sig: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Each recipient (`to` is comma-separated).
    pub to: Vec<String>,
    pub app_id: String,
    pub template_id: String,
    pub datas: Vec<String>,
    pub req_id: Option<String>,
}

/// Check `req` the way CCP does, in this order: URL, sig presence, Authorization, timestamp,
/// account, sig value, then the body. `now` is the server's clock.
pub fn check(
    creds: Credentials<'_>,
    req: Request<'_>,
    now: DateTime<Utc>,
) -> Result<Accepted, Rejection> {
    if req.version != VERSION {
        return Err(BAD_VERSION);
    }
    if !is_hex32(req.account_sid) {
        return Err(BAD_ACCOUNT_FORMAT);
    }
    let sig_param = req.sig.filter(|s| !s.is_empty()).ok_or(SIG_EMPTY)?;
    let auth = req
        .authorization
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(AUTH_EMPTY)?;
    let decoded = STANDARD.decode(auth).map_err(|_| AUTH_NOT_BASE64)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AUTH_NOT_BASE64)?;
    let (auth_sid, ts) = decoded.split_once(':').ok_or(AUTH_BAD_FORMAT)?;
    if auth_sid.is_empty() {
        return Err(AUTH_NO_ACCOUNT);
    }
    if ts.is_empty() {
        return Err(AUTH_NO_TIMESTAMP);
    }
    let sent_at = parse_timestamp(ts).ok_or(TIMESTAMP_FORMAT)?;
    if auth_sid != req.account_sid {
        return Err(ACCOUNT_MISMATCH);
    }
    let server_local = now.with_timezone(&shanghai()).naive_local();
    if (server_local - sent_at).abs() > TIMESTAMP_WINDOW {
        return Err(TIMESTAMP_EXPIRED);
    }
    if req.account_sid != creds.account_sid {
        return Err(NO_SUCH_ACCOUNT);
    }
    if sig_param != sig(creds.account_sid, creds.auth_token, ts) {
        return Err(SIG_MISMATCH);
    }
    check_body(creds, req.body)
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `yyyyMMddHHmmss`: exactly 14 ASCII digits forming a real date and time.
fn parse_timestamp(ts: &str) -> Option<NaiveDateTime> {
    if ts.len() != 14 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDateTime::parse_from_str(ts, "%Y%m%d%H%M%S").ok()
}

fn check_body(creds: Credentials<'_>, body: &[u8]) -> Result<Accepted, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BODY_EMPTY);
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| BODY_UNPARSABLE)?;
    let obj = value.as_object().ok_or(BODY_UNPARSABLE)?;
    let string = |key: &str| -> Result<Option<&str>, Rejection> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(BODY_UNPARSABLE),
        }
    };

    let to = recipients(string("to")?.ok_or(NUMBER_EMPTY)?)?;

    let app_id = string("appId")?.ok_or(APP_ID_EMPTY)?;
    if app_id != creds.app_id {
        return Err(NO_SUCH_APP);
    }

    let template_id = string("templateId")?.ok_or(TEMPLATE_INVALID)?;
    if !template_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TEMPLATE_ID_NOT_NUMERIC);
    }
    let datas = template_data(obj.get("datas"), template_id)?;

    let req_id = string("reqId")?;
    if req_id
        .is_some_and(|r| r.len() > MAX_REQ_ID_LEN || !r.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(REQ_ID_TOO_LONG);
    }

    Ok(Accepted {
        to,
        app_id: app_id.to_owned(),
        template_id: template_id.to_owned(),
        datas,
        req_id: req_id.map(str::to_owned),
    })
}

/// `to`: comma-separated mainland mobiles, at most [`MAX_RECIPIENTS`].
fn recipients(field: &str) -> Result<Vec<String>, Rejection> {
    let to: Vec<String> = field.split(',').map(|s| s.trim().to_owned()).collect();
    if to.len() > MAX_RECIPIENTS {
        return Err(TOO_MANY_NUMBERS);
    }
    if !to.iter().all(|m| is_mobile(m)) {
        return Err(NUMBER_FORMAT);
    }
    Ok(to)
}

/// `datas`: the template's variables, an array of strings (absent or null: none).
fn template_data(datas: Option<&Value>, template_id: &str) -> Result<Vec<String>, Rejection> {
    let datas: Vec<String> = match datas {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(DATAS_FORMAT))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(DATAS_FORMAT),
    };
    // Template 1 is CCP's test template: its variables must be numbers.
    if template_id == "1"
        && !datas
            .iter()
            .all(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(TEST_TEMPLATE_NOT_NUMERIC);
    }
    Ok(datas)
}

/// A mainland mobile: 11 digits starting with 1[3-9].
pub fn is_mobile(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
        && b.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "fedcba9876543210fedcba9876543210";
    const APP: &str = "aaaabbbbccccddddeeeeffff00001111";

    fn creds() -> Credentials<'static> {
        Credentials {
            account_sid: SID,
            auth_token: TOKEN,
            app_id: APP,
        }
    }

    fn now() -> DateTime<Utc> {
        // 2026-11-27 10:00:00 UTC = 18:00:00 in Shanghai.
        DateTime::from_timestamp(1_795_773_600, 0).expect("valid")
    }

    const BODY: &str = r#"{"to":"13800138000","appId":"aaaabbbbccccddddeeeeffff00001111","templateId":"1","datas":["123456","5"],"reqId":"r1"}"#;

    fn check_with(
        version: &str,
        sid: &str,
        sig_param: Option<&str>,
        auth: Option<&str>,
        body: &str,
    ) -> Result<Accepted, Rejection> {
        check(
            creds(),
            Request {
                version,
                account_sid: sid,
                sig: sig_param,
                authorization: auth,
                body: body.as_bytes(),
            },
            now(),
        )
    }

    fn signed(ts: &str, body: &str) -> Result<Accepted, Rejection> {
        let s = sig(SID, TOKEN, ts);
        let a = authorization(SID, ts);
        check_with(VERSION, SID, Some(&s), Some(&a), body)
    }

    #[test]
    fn timestamps_are_shanghai_wall_clock_time() {
        assert_eq!(timestamp(now()), "20261127180000");
    }

    #[test]
    fn sig_is_upper_case_md5_of_sid_token_and_timestamp() {
        // md5("abc") = 900150983cd24fb0d6963f7d28e17f72
        assert_eq!(sig("a", "b", "c"), "900150983CD24FB0D6963F7D28E17F72");
        assert_eq!(
            authorization("ab", "20261127180000"),
            "YWI6MjAyNjExMjcxODAwMDA="
        );
    }

    #[test]
    fn a_correctly_signed_request_is_accepted() {
        let ok = signed("20261127180000", BODY).expect("accepted");
        assert_eq!(
            ok,
            Accepted {
                to: vec!["13800138000".into()],
                app_id: APP.into(),
                template_id: "1".into(),
                datas: vec!["123456".into(), "5".into()],
                req_id: Some("r1".into()),
            }
        );
        // 23 h 59 min either side of the server clock is still inside the window.
        signed("20261126180100", BODY).expect("a day ago, nearly");
        signed("20261128175900", BODY).expect("a day ahead, nearly");
    }

    #[test]
    fn url_and_authentication_errors_get_ccp_codes() {
        let ts = "20261127180000";
        let good_sig = sig(SID, TOKEN, ts);
        let good_auth = authorization(SID, ts);
        let other_sid = "ffffffffffffffffffffffffffffffff";
        let cases: Vec<(&str, Result<Accepted, Rejection>, Rejection)> = vec![
            (
                "wrong REST version",
                check_with("2014-06-30", SID, Some(&good_sig), Some(&good_auth), BODY),
                BAD_VERSION,
            ),
            (
                "account id not 32 hex",
                check_with(VERSION, "abc", Some(&good_sig), Some(&good_auth), BODY),
                BAD_ACCOUNT_FORMAT,
            ),
            (
                "no sig",
                check_with(VERSION, SID, None, Some(&good_auth), BODY),
                SIG_EMPTY,
            ),
            (
                "empty sig",
                check_with(VERSION, SID, Some(""), Some(&good_auth), BODY),
                SIG_EMPTY,
            ),
            (
                "no Authorization",
                check_with(VERSION, SID, Some(&good_sig), None, BODY),
                AUTH_EMPTY,
            ),
            (
                "Authorization not base64",
                check_with(VERSION, SID, Some(&good_sig), Some("%%%"), BODY),
                AUTH_NOT_BASE64,
            ),
            (
                "Authorization without a colon",
                check_with(
                    VERSION,
                    SID,
                    Some(&good_sig),
                    Some(&STANDARD.encode("nocolon")),
                    BODY,
                ),
                AUTH_BAD_FORMAT,
            ),
            (
                "Authorization without an account",
                check_with(
                    VERSION,
                    SID,
                    Some(&good_sig),
                    Some(&authorization("", ts)),
                    BODY,
                ),
                AUTH_NO_ACCOUNT,
            ),
            (
                "Authorization without a timestamp",
                check_with(
                    VERSION,
                    SID,
                    Some(&good_sig),
                    Some(&authorization(SID, "")),
                    BODY,
                ),
                AUTH_NO_TIMESTAMP,
            ),
            (
                "timestamp with separators",
                signed("2026-11-27 18:00", BODY),
                TIMESTAMP_FORMAT,
            ),
            (
                "timestamp of 13 digits",
                signed("2026112718000", BODY),
                TIMESTAMP_FORMAT,
            ),
            (
                "timestamp that is no date (month 13)",
                signed("20261327180000", BODY),
                TIMESTAMP_FORMAT,
            ),
            (
                "Authorization account differs from the URL's",
                check_with(
                    VERSION,
                    SID,
                    Some(&good_sig),
                    Some(&authorization(other_sid, ts)),
                    BODY,
                ),
                ACCOUNT_MISMATCH,
            ),
            (
                "timestamp more than 24 h old",
                signed("20261126175959", BODY),
                TIMESTAMP_EXPIRED,
            ),
            (
                "timestamp more than 24 h ahead",
                signed("20261128180001", BODY),
                TIMESTAMP_EXPIRED,
            ),
            (
                "unknown account",
                check_with(
                    VERSION,
                    other_sid,
                    Some(&sig(other_sid, TOKEN, ts)),
                    Some(&authorization(other_sid, ts)),
                    BODY,
                ),
                NO_SUCH_ACCOUNT,
            ),
            (
                "sig made with the wrong token",
                check_with(
                    VERSION,
                    SID,
                    Some(&sig(SID, "wrong", ts)),
                    Some(&good_auth),
                    BODY,
                ),
                SIG_MISMATCH,
            ),
            (
                "sig in lower case",
                check_with(
                    VERSION,
                    SID,
                    Some(&good_sig.to_lowercase()),
                    Some(&good_auth),
                    BODY,
                ),
                SIG_MISMATCH,
            ),
            (
                "sig over another timestamp than Authorization's",
                check_with(
                    VERSION,
                    SID,
                    Some(&sig(SID, TOKEN, "20261127180001")),
                    Some(&good_auth),
                    BODY,
                ),
                SIG_MISMATCH,
            ),
        ];
        for (why, got, want) in cases {
            assert_eq!(got, Err(want), "{why}");
        }
    }

    #[test]
    fn body_errors_get_ccp_codes() {
        let ts = "20261127180000";
        let many: Vec<&str> = std::iter::repeat_n("13800138000", 201).collect();
        let too_many = format!(
            r#"{{"to":"{}","appId":"{APP}","templateId":"1","datas":["1"]}}"#,
            many.join(",")
        );
        let long_req = format!(
            r#"{{"to":"13800138000","appId":"{APP}","templateId":"1","datas":["1"],"reqId":"{}"}}"#,
            "r".repeat(33)
        );
        let hyphenated = format!(
            r#"{{"to":"13800138000","appId":"{APP}","templateId":"1","datas":["1"],"reqId":"{}"}}"#,
            uuid::Uuid::nil()
        );
        let cases: Vec<(&str, String, Rejection)> = vec![
            ("empty body", String::new(), BODY_EMPTY),
            ("not JSON", "to=13800138000".into(), BODY_UNPARSABLE),
            ("a JSON list", "[]".into(), BODY_UNPARSABLE),
            (
                "no recipient",
                format!(r#"{{"appId":"{APP}","templateId":"1","datas":["1"]}}"#),
                NUMBER_EMPTY,
            ),
            (
                "recipient as a number",
                format!(r#"{{"to":13800138000,"appId":"{APP}","templateId":"1"}}"#),
                BODY_UNPARSABLE,
            ),
            (
                "bad number",
                format!(r#"{{"to":"12800138000","appId":"{APP}","templateId":"1"}}"#),
                NUMBER_FORMAT,
            ),
            ("201 numbers", too_many, TOO_MANY_NUMBERS),
            (
                "no appId",
                r#"{"to":"13800138000","templateId":"1","datas":["1"]}"#.into(),
                APP_ID_EMPTY,
            ),
            (
                "unknown appId",
                r#"{"to":"13800138000","appId":"x","templateId":"1","datas":["1"]}"#.into(),
                NO_SUCH_APP,
            ),
            (
                "no templateId",
                format!(r#"{{"to":"13800138000","appId":"{APP}","datas":["1"]}}"#),
                TEMPLATE_INVALID,
            ),
            (
                "templateId not numeric",
                format!(r#"{{"to":"13800138000","appId":"{APP}","templateId":"abc"}}"#),
                TEMPLATE_ID_NOT_NUMERIC,
            ),
            (
                "datas item is a JSON number",
                format!(
                    r#"{{"to":"13800138000","appId":"{APP}","templateId":"1","datas":[123456,"5"]}}"#
                ),
                DATAS_FORMAT,
            ),
            (
                "datas is a string",
                format!(
                    r#"{{"to":"13800138000","appId":"{APP}","templateId":"1","datas":"123456"}}"#
                ),
                DATAS_FORMAT,
            ),
            (
                "test template with a non-numeric variable",
                format!(
                    r#"{{"to":"13800138000","appId":"{APP}","templateId":"1","datas":["123456","5分钟"]}}"#
                ),
                TEST_TEMPLATE_NOT_NUMERIC,
            ),
            ("reqId of 33 characters", long_req, REQ_ID_TOO_LONG),
            ("reqId as a hyphenated UUID", hyphenated, REQ_ID_TOO_LONG),
        ];
        for (why, body, want) in cases {
            assert_eq!(signed(ts, &body), Err(want), "{why}");
        }
        let other_template = format!(
            r#"{{"to":"13800138000,13900139000","appId":"{APP}","templateId":"42","datas":["123456","5分钟"]}}"#
        );
        let ok = signed(ts, &other_template).expect("a real template takes any text");
        assert_eq!(ok.to, ["13800138000", "13900139000"]);
        assert_eq!(ok.req_id, None);
    }
}
