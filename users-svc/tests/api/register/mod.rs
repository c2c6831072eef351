//! `POST /users/`: every case of docs/http-contract.md §6, one concern a file: field checks and
//! success (`fields`), the SMS code (`sms_code`), concurrency (`races`), dependencies down
//! (`faults`), Django compatibility (`django`) and the per-IP limit (`limits`). The helpers they
//! share are here.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{
    JWT_SECRET, Options, TestApp, registration, spawn_app, spawn_app_with, status_and_json,
};

pub(super) const MOBILE: &str = "13800138000";
pub(super) const CODE: &str = "123456";

mod django;
mod faults;
mod fields;
mod limits;
mod races;
mod sms_code;

/// The row of `username` as (id, password, is_superuser, is_staff, is_active, first_name,
/// last_name, email, last_login, mobile, date_joined age in seconds).
pub(super) fn row(app: &TestApp, username: &str) -> Vec<String> {
    let rows = app.db.query(&format!(
        "SET NAMES utf8mb4; SELECT id, password, is_superuser, is_staff, is_active, first_name, last_name, email, \
         IFNULL(last_login, 'NULL'), mobile, TIMESTAMPDIFF(SECOND, date_joined, UTC_TIMESTAMP(6)), username \
         FROM tb_users WHERE username = '{username}'"
    ));
    assert_eq!(rows.len(), 1, "one row for {username}: {rows:?}");
    rows.into_iter().next().expect("one row")
}

/// Check a token the way djangorestframework-jwt would: HS256 over `header.payload` with the
/// shared secret, then return the payload.
pub(super) fn verified_claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .expect("base64url without padding")
    };
    let header: Value = serde_json::from_slice(&decode(parts[0])).expect("header JSON");
    assert_eq!(header, json!({"typ": "JWT", "alg": "HS256"}));
    let mut mac = Hmac::<Sha256>::new_from_slice(JWT_SECRET.as_bytes()).expect("key");
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&decode(parts[2]))
        .expect("the signature verifies with JWT_SECRET");
    serde_json::from_slice(&decode(parts[1])).expect("payload JSON")
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Status and raw body text of a JSON response, for bodies whose key order matters.
/// Every registration of `bodies` sent at once; status and JSON body of each, in order.
pub(super) async fn register_concurrently(app: &TestApp, bodies: &[Value]) -> Vec<(u16, Value)> {
    futures::future::join_all(
        bodies
            .iter()
            .map(|b| async { status_and_json(app.register(b).await).await }),
    )
    .await
}

/// Exactly one of `results` is a 201; every other is a 400 with `loser`.
pub(super) fn assert_one_created(results: &[(u16, Value)], loser: &Value) {
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "{results:?}"
    );
    for (status, body) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!((*status, body), (400, loser));
    }
}

pub(super) async fn status_and_text(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let ct = res.headers()["content-type"].clone();
    assert_eq!(ct, "application/json", "{status}");
    (status, res.text().await.expect("body"))
}

/// A registration with a stored code answers 201 and leaves exactly the expected traces.
pub(super) async fn assert_registered(
    app: &TestApp,
    res: reqwest::Response,
    username: &str,
    mobile: &str,
    password: &str,
) {
    let (status, body) = status_and_json(res).await;
    assert_eq!(status, 201, "{body}");
    let r = row(app, username);
    let id: i64 = r[0].parse().expect("id");
    let token = body["token"].as_str().expect("a token").to_owned();
    assert_eq!(
        body,
        json!({"id": id, "username": username, "mobile": mobile, "token": token})
    );
    let claims = verified_claims(&token);
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(exp.abs_diff(now_secs() + 86_400) <= 5, "{claims}");
    assert_eq!(
        claims,
        json!({"user_id": id, "username": username, "exp": exp, "email": ""})
    );
    // password, is_superuser, is_staff, is_active, first_name, last_name, email, last_login, mobile
    assert!(r[1].starts_with("bcrypt_sha256$$2b$10$"), "{}", r[1]);
    assert!(users_svc::domain::password::verify(password, &r[1]));
    assert_eq!(&r[2..10], ["0", "0", "1", "", "", "", "NULL", mobile]);
    let age: i64 = r[10].parse().expect("age");
    assert!((0..=10).contains(&age), "date_joined is now (UTC): {age}");
    // The code is single use; its attempt counter goes with it.
    assert_eq!(app.redis_get(&format!("sms_{mobile}")), None);
    assert_eq!(app.redis_get(&format!("sms_attempts_{mobile}")), None);
}

/// Poll `/metrics` until it has `line` (a state the test must wait for, instead of guessing a
/// sleep that a loaded machine could outlast); panics after 30 s.
pub(super) async fn wait_for_metric(app: &TestApp, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = app.get("/metrics").await.text().await.expect("metrics");
        if metrics.lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {line} in\n{metrics}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The value of `users_registrations_total{outcome}` (0 when the series does not exist yet).
pub(super) async fn outcome_count(app: &TestApp, outcome: &str) -> u64 {
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    let prefix =
        format!(r#"users_registrations_total{{outcome="{outcome}",service="users-svc"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.parse().expect("a count"))
}

/// passlib's `django_bcrypt_sha256` is an independent implementation of Django's hasher.
pub fn passlib(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sys\nfrom passlib.hash import django_bcrypt_sha256 as h\n{script}"
        ))
        .args(args)
        .output()
        .expect("python3 runs (deploy/dev installs it with passlib==1.7.4 bcrypt==4.0.1)");
    assert!(
        out.status.success(),
        "passlib failed (pip install passlib==1.7.4 bcrypt==4.0.1): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
