//! Reading a request body with a size limit, and parsing it the way DRF's parsers do.

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures::StreamExt;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::extractors::json_parse_error;
use crate::drf::msg;

/// Largest request body any endpoint accepts (docs/http-contract.md §2: 16 KiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Read the request body, refusing more than [`MAX_BODY_BYTES`] with 413 as soon as the
/// `Content-Length` or the bytes received so far say so (nothing larger is buffered).
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("request body error - {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parse a request body the way DRF's default parsers do: JSON or form-encoded, into an object.
///
/// - JSON that does not parse: 400 `{"detail": "JSON parse error - ..."}`;
/// - JSON that is not an object: 400 `{"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}`;
/// - any other content type: 415; an empty body with no content type is an empty object.
///
/// Form values are strings; a repeated key keeps its last value, as Django's `QueryDict.get` does.
pub fn parse_object(req: &HttpRequest, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let ct = content_type(req);
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => {
            let value: Value = serde_json::from_slice(body).map_err(|e| json_parse_error(&e))?;
            match value {
                Value::Object(map) => Ok(map),
                other => Err(ApiError::non_field(msg::expected_dictionary(
                    json_type_name(&other),
                ))),
            }
        }
        "application/x-www-form-urlencoded" => {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| ApiError::BadRequest(format!("Form parse error - {e}")))?;
            Ok(pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect())
        }
        "" if body.is_empty() => Ok(Map::new()),
        _ => Err(ApiError::UnsupportedMediaType(ct.to_owned())),
    }
}

/// The Python type name DRF puts in "Expected a dictionary, but got {type}."
fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

pub(super) fn content_type(req: &HttpRequest) -> &str {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn bodies_parse_like_drf() {
        let json = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "application/json; charset=utf-8"))
            .to_http_request();
        let map = parse_object(&json, br#"{"a": "1", "b": true}"#).expect("object");
        assert_eq!(map["b"], Value::Bool(true));

        let err = parse_object(&json, b"[1]").expect_err("list");
        assert!(
            matches!(&err, ApiError::Validation(e) if e.get("non_field_errors") == Some(&["Invalid data. Expected a dictionary, but got list.".to_owned()][..]))
        );
        let err = parse_object(&json, b"{\"a\": ").expect_err("truncated");
        assert!(
            matches!(&err, ApiError::BadRequest(d) if d.starts_with("JSON parse error - EOF while parsing")),
            "{err:?}"
        );
        let deep = "[".repeat(10_000);
        assert!(
            matches!(parse_object(&json, deep.as_bytes()), Err(ApiError::BadRequest(d)) if d.contains("recursion limit"))
        );

        let form = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
            .to_http_request();
        let map = parse_object(&form, b"username=%E7%94%A8&allow=true&allow=false").expect("form");
        assert_eq!(map["username"], Value::String("用".into()));
        assert_eq!(
            map["allow"],
            Value::String("false".into()),
            "last value wins"
        );

        let text = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "text/plain"))
            .to_http_request();
        assert!(
            matches!(parse_object(&text, b"x"), Err(ApiError::UnsupportedMediaType(t)) if t == "text/plain")
        );
        let none = TestRequest::default().to_http_request();
        assert!(parse_object(&none, b"").expect("empty").is_empty());
    }
}
