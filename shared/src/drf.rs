//! The error bodies Django REST framework sends, and the exact texts the original meiduo
//! deployment answers with (zh-hans locale), so existing front ends keep showing the same words.

use serde::Serialize;
use serde::ser::SerializeMap;

/// DRF's generic field messages, as rendered by the zh-hans locale of the original.
pub mod msg {
    pub const REQUIRED: &str = "该字段是必填项。";
    pub const BLANK: &str = "该字段不能为空。";
    pub const NOT_A_STRING: &str = "Not a valid string.";
    pub const INVALID_UUID: &str = "Must be a valid UUID.";
    pub const NOT_FOUND: &str = "Not found.";
    pub const THROTTLED: &str = "请求次数过于频繁，请稍后再试";
    pub const UNAVAILABLE: &str = "服务暂时不可用，请稍后重试";
    pub const INTERNAL: &str = "服务器内部错误";
    pub const TOO_LARGE: &str = "请求体过大。";

    /// `请确保这个字段至少包含 {n} 个字符。`
    pub fn min_length(n: usize) -> String {
        format!("请确保这个字段至少包含 {n} 个字符。")
    }

    /// `请确保这个字段不能超过 {n} 个字符。`
    pub fn max_length(n: usize) -> String {
        format!("请确保这个字段不能超过 {n} 个字符。")
    }

    /// `方法 “POST” 不被允许。`
    pub fn method_not_allowed(method: &str) -> String {
        format!("方法 “{method}” 不被允许。")
    }

    /// `不支持请求中的媒体类型 “text/plain”。`
    pub fn unsupported_media_type(media_type: &str) -> String {
        format!("不支持请求中的媒体类型 “{media_type}”。")
    }

    /// `Invalid data. Expected a dictionary, but got list.`
    pub fn expected_dictionary(got: &str) -> String {
        format!("Invalid data. Expected a dictionary, but got {got}.")
    }
}

/// Field errors in the order the fields were checked, serialized as a JSON object
/// `{"mobile": ["手机号格式错误"], "non_field_errors": [...]}` like a DRF serializer's `errors`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<(String, Vec<String>)>);

/// The key DRF uses for errors that belong to no single field.
pub const NON_FIELD_ERRORS: &str = "non_field_errors";

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// One error for one field.
    pub fn single(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new();
        e.add(field, message);
        e
    }

    /// One `non_field_errors` message.
    pub fn non_field(message: impl Into<String>) -> Self {
        Self::single(NON_FIELD_ERRORS, message)
    }

    /// Append a message to a field, keeping first-seen field order.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        match self.0.iter_mut().find(|(f, _)| f == field) {
            Some((_, msgs)) => msgs.push(message.into()),
            None => self.0.push((field.to_owned(), vec![message.into()])),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The messages of one field.
    pub fn get(&self, field: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_slice())
    }

    /// `Ok(())` when empty, so a validator can end with `errors.into_result()?`.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl Serialize for FieldErrors {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (field, msgs) in &self.0 {
            map.serialize_entry(field, msgs)?;
        }
        map.end()
    }
}

/// `{"detail": "..."}`.
#[derive(Debug, Serialize)]
pub struct Detail<'a> {
    pub detail: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_keep_check_order_and_group_messages() {
        let mut e = FieldErrors::new();
        e.add("username", msg::REQUIRED);
        e.add("mobile", "手机号格式错误");
        e.add("username", "x");
        assert_eq!(
            serde_json::to_string(&e).expect("ser"),
            r#"{"username":["该字段是必填项。","x"],"mobile":["手机号格式错误"]}"#
        );
        assert_eq!(e.get("mobile"), Some(&["手机号格式错误".to_owned()][..]));
    }

    #[test]
    fn texts_match_the_original() {
        assert_eq!(msg::method_not_allowed("POST"), "方法 “POST” 不被允许。");
        assert_eq!(msg::min_length(4), "请确保这个字段至少包含 4 个字符。");
        assert_eq!(msg::max_length(4), "请确保这个字段不能超过 4 个字符。");
        assert_eq!(
            serde_json::to_string(&FieldErrors::non_field("图片验证码无效")).expect("ser"),
            r#"{"non_field_errors":["图片验证码无效"]}"#
        );
        assert!(FieldErrors::new().into_result().is_ok());
    }
}
