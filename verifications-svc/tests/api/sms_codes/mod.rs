//! `GET /sms_codes/{mobile}/?image_code_id=&text=`, one concern a file: the success path
//! (`success`), the field and captcha checks (`captcha_checks`), the resend guard and the limits
//! (`limits`), Redis and queue failures (`faults`). The texts and helpers they share are here.

use std::time::Duration;

use chrono::Utc;
use redis::Commands;

use crate::helpers::{Options, TestApp, new_id, spawn_app, spawn_app_with, status_and_body};

pub(super) const MOBILE: &str = "13812345678";
pub(super) const OK: &str = r#"{"message":"OK"}"#;
pub(super) const INVALID: &str = r#"{"non_field_errors":["图片验证码无效"]}"#;
pub(super) const WRONG: &str = r#"{"non_field_errors":["图片验证码错误"]}"#;
pub(super) const FREQUENT: &str = r#"{"non_field_errors":["请求次数过于频繁"]}"#;
pub(super) const THROTTLED: &str = r#"{"detail":"请求次数过于频繁，请稍后再试"}"#;
pub(super) const UNAVAILABLE: &str = r#"{"detail":"服务暂时不可用，请稍后重试"}"#;
pub(super) const NOT_FOUND: &str = r#"{"detail":"Not found."}"#;

mod captcha_checks;
mod faults;
mod limits;
mod success;

/// Seed a captcha and ask for an SMS code with its right text.
pub(super) async fn send(app: &TestApp, mobile: &str) -> reqwest::Response {
    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    app.sms_code(mobile, &id, "acde").await
}

/// Like [`send`], through a proxy that says the client is `xff`.
pub(super) async fn send_from(app: &TestApp, mobile: &str, xff: &str) -> reqwest::Response {
    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    app.http
        .get(format!(
            "{}/sms_codes/{mobile}/?image_code_id={id}&text=ACDE",
            app.address
        ))
        .header("x-forwarded-for", xff)
        .send()
        .await
        .expect("sent")
}
