//! `POST /users/`: every case of docs/http-contract.md §6, races, faults, Django compatibility.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{
    JWT_SECRET, Options, TestApp, registration, spawn_app, spawn_app_with, status_and_json,
};

const MOBILE: &str = "13800138000";
const CODE: &str = "123456";

/// The row of `username` as (id, password, is_superuser, is_staff, is_active, first_name,
/// last_name, email, last_login, mobile, date_joined age in seconds).
fn row(app: &TestApp, username: &str) -> Vec<String> {
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
fn verified_claims(token: &str) -> Value {
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Status and raw body text of a JSON response, for bodies whose key order matters.
async fn status_and_text(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let ct = res.headers()["content-type"].clone();
    assert_eq!(ct, "application/json", "{status}");
    (status, res.text().await.expect("body"))
}

/// A registration with a stored code answers 201 and leaves exactly the expected traces.
async fn assert_registered(
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

#[tokio::test]
async fn a_valid_json_registration_creates_the_account_and_answers_201_with_a_token() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    let res = app.register(&registration("alice123", MOBILE, CODE)).await;
    assert_registered(&app, res, "alice123", MOBILE, "password123").await;
    assert_eq!(app.user_count(), 1);
}

#[tokio::test]
async fn a_form_encoded_registration_works_like_json() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    let body = format!(
        "username=%E7%94%A8%E6%88%B7abc&password=pass+word+1&password2=pass+word+1&sms_code={CODE}&mobile={MOBILE}&allow=true"
    );
    let res = app
        .register_raw("application/x-www-form-urlencoded", body)
        .await;
    assert_registered(&app, res, "用户abc", MOBILE, "pass word 1").await;
}

#[tokio::test]
async fn surrounding_whitespace_is_trimmed_like_drf() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    let mut body = registration("  bob12345 ", &format!(" {MOBILE}"), CODE);
    body["allow"] = json!(" true ");
    let res = app.register(&body).await;
    assert_registered(&app, res, "bob12345", MOBILE, "password123").await;
}

#[tokio::test]
async fn four_byte_characters_are_stored_and_never_cause_a_5xx() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    let mut body = registration("𠀀𠀀𠀀𠀀𠀀", MOBILE, CODE);
    body["password"] = json!("😀😀😀😀😀😀😀😀");
    body["password2"] = json!("😀😀😀😀😀😀😀😀");
    let res = app.register(&body).await;
    assert_registered(&app, res, "𠀀𠀀𠀀𠀀𠀀", MOBILE, "😀😀😀😀😀😀😀😀").await;

    // Another rare-CJK name is a different name (utf8mb4_unicode_520_ci weighs them apart).
    app.store_sms_code("13900139000", CODE);
    let res = app
        .register(&registration("𠀁𠀁𠀁𠀁𠀁", "13900139000", CODE))
        .await;
    assert_eq!(res.status(), 201);

    let cases = [
        (
            "emoji username",
            json!({"username": "😀😀😀😀😀"}),
            json!({"username": ["仅允许5-20个字符的用户名"]}),
        ),
        (
            "emoji mobile",
            json!({"mobile": "1😀😀😀😀😀"}),
            json!({"mobile": ["手机号格式错误"]}),
        ),
        (
            "emoji allow",
            json!({"allow": "😀"}),
            json!({"allow": ["请同意用户协议"]}),
        ),
    ];
    for (why, patch, want) in cases {
        let mut body = registration("carol123", "13700137000", CODE);
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, got) = status_and_json(app.register(&body).await).await;
        assert_eq!((status, got), (400, want), "{why}");
    }
    // An emoji SMS code is simply wrong.
    app.store_sms_code("13700137000", CODE);
    let (status, got) = status_and_json(
        app.register(&registration("carol123", "13700137000", "😀😀"))
            .await,
    )
    .await;
    assert_eq!(
        (status, got),
        (400, json!({"non_field_errors": ["短信验证码错误"]}))
    );
    assert_eq!(app.user_count(), 2);
}

#[tokio::test]
async fn every_field_error_is_reported_together_in_the_serializers_order() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    // The exact text, to pin the key order as DRF sends it.
    let res = app.register(&json!({})).await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.text().await.expect("body"),
        r#"{"username":["该字段是必填项。"],"password":["该字段是必填项。"],"password2":["该字段是必填项。"],"sms_code":["该字段是必填项。"],"mobile":["该字段是必填项。"],"allow":["该字段是必填项。"]}"#
    );

    let valid = registration("alice123", MOBILE, CODE);
    // The raw body text, not a `Value`: the key order of a multi-field error is DRF's field
    // order, and a `Value` comparison would not notice another.
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "all blank",
            json!({"username": "", "password": "", "password2": "", "sms_code": "", "mobile": "", "allow": ""}),
            r#"{"username":["该字段不能为空。"],"password":["该字段不能为空。"],"password2":["该字段不能为空。"],"sms_code":["该字段不能为空。"],"mobile":["该字段不能为空。"],"allow":["该字段不能为空。"]}"#,
        ),
        (
            "whitespace only is blank",
            json!({"username": "   ", "sms_code": "\t"}),
            r#"{"username":["该字段不能为空。"],"sms_code":["该字段不能为空。"]}"#,
        ),
        (
            "booleans and numbers are not strings",
            json!({"username": true, "password": 12345678, "mobile": 13800138000_u64, "allow": true}),
            r#"{"username":["Not a valid string."],"password":["Not a valid string."],"mobile":["Not a valid string."],"allow":["Not a valid string."]}"#,
        ),
        (
            "lists and objects are not strings",
            json!({"password2": ["x"], "sms_code": {"a": 1}}),
            r#"{"password2":["Not a valid string."],"sms_code":["Not a valid string."]}"#,
        ),
        (
            "null",
            json!({"username": null}),
            r#"{"username":["该字段不能为 null。"]}"#,
        ),
        (
            "username too short",
            json!({"username": "abcd"}),
            r#"{"username":["仅允许5-20个字符的用户名"]}"#,
        ),
        (
            "username too long",
            json!({"username": "a".repeat(21)}),
            r#"{"username":["仅允许5-20个字符的用户名"]}"#,
        ),
        (
            "username with a dash",
            json!({"username": "ab-cdef"}),
            r#"{"username":["仅允许5-20个字符的用户名"]}"#,
        ),
        (
            "password too short",
            json!({"password": "1234567", "password2": "1234567"}),
            r#"{"password":["仅允许8-20个字符的密码"]}"#,
        ),
        (
            "password too long",
            json!({"password": "a".repeat(21), "password2": "a".repeat(21)}),
            r#"{"password":["仅允许8-20个字符的密码"]}"#,
        ),
        (
            "password length counts characters, not bytes",
            json!({"password": "密".repeat(21)}),
            r#"{"password":["仅允许8-20个字符的密码"]}"#,
        ),
        (
            "NUL character in the password",
            json!({"password": "pass\u{0}word1", "password2": "pass\u{0}word1"}),
            r#"{"password":["Null characters are not allowed."],"password2":["Null characters are not allowed."]}"#,
        ),
        (
            "mobile second digit 2",
            json!({"mobile": "12800138000"}),
            r#"{"mobile":["手机号格式错误"]}"#,
        ),
        (
            "mobile too long",
            json!({"mobile": "138001380000"}),
            r#"{"mobile":["手机号格式错误"]}"#,
        ),
        (
            "allow false",
            json!({"allow": "false"}),
            r#"{"allow":["请同意用户协议"]}"#,
        ),
        (
            "allow True",
            json!({"allow": "True"}),
            r#"{"allow":["请同意用户协议"]}"#,
        ),
        (
            "field errors win over a password mismatch",
            json!({"password2": "different1", "allow": "no"}),
            r#"{"allow":["请同意用户协议"]}"#,
        ),
    ];
    for (why, patch, want) in cases {
        let mut body = valid.clone();
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, got) = status_and_text(app.register(&body).await).await;
        assert_eq!((status, got.as_str()), (400, want), "{why}");
    }
    assert_eq!(app.user_count(), 0);
    assert_eq!(
        app.redis_get(&format!("sms_{MOBILE}")).as_deref(),
        Some(CODE),
        "the code is untouched"
    );
    assert_eq!(app.redis_get(&format!("sms_attempts_{MOBILE}")), None);
}

#[tokio::test]
async fn taken_usernames_and_mobiles_are_field_errors_reported_with_the_others() {
    let app = spawn_app().await;
    app.insert_user("Alice123", MOBILE);
    app.store_sms_code(MOBILE, CODE);
    let cases = [
        (
            "username taken, other case",
            registration("aLICE123", "13900139000", CODE),
            r#"{"username":["已存在一位使用该名字的用户。"]}"#,
        ),
        (
            "mobile taken",
            registration("bob12345", MOBILE, CODE),
            r#"{"mobile":["具有 手机号 的 用户 已存在。"]}"#,
        ),
        (
            "both taken",
            registration("alice123", MOBILE, CODE),
            r#"{"username":["已存在一位使用该名字的用户。"],"mobile":["具有 手机号 的 用户 已存在。"]}"#,
        ),
    ];
    // Raw text: the order of the fields in a multi-field error is DRF's.
    for (why, body, want) in cases {
        let (status, got) = status_and_text(app.register(&body).await).await;
        assert_eq!((status, got.as_str()), (400, want), "{why}");
    }
    let mut body = registration("alice123", MOBILE, CODE);
    body["password"] = json!("short");
    let (status, got) = status_and_text(app.register(&body).await).await;
    assert_eq!(
        (status, got.as_str()),
        (
            400,
            r#"{"username":["已存在一位使用该名字的用户。"],"password":["仅允许8-20个字符的密码"],"mobile":["具有 手机号 的 用户 已存在。"]}"#
        )
    );
    assert_eq!(app.user_count(), 1);
}

#[tokio::test]
async fn different_passwords_are_refused_before_the_sms_code_is_looked_at() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    let mut body = registration("alice123", MOBILE, "654321");
    body["password2"] = json!("password124");
    let (status, got) = status_and_json(app.register(&body).await).await;
    assert_eq!(
        (status, got),
        (400, json!({"non_field_errors": ["两次密码不一致"]}))
    );
    assert_eq!(
        app.redis_get(&format!("sms_attempts_{MOBILE}")),
        None,
        "no attempt counted"
    );
    assert_eq!(app.user_count(), 0);
}

#[tokio::test]
async fn a_missing_code_is_invalid_and_a_wrong_one_is_counted() {
    let app = spawn_app().await;
    let (status, got) =
        status_and_json(app.register(&registration("alice123", MOBILE, CODE)).await).await;
    assert_eq!(
        (status, got),
        (400, json!({"non_field_errors": ["无效的短信验证码"]}))
    );

    app.store_sms_code(MOBILE, CODE);
    let (status, got) = status_and_json(
        app.register(&registration("alice123", MOBILE, "654321"))
            .await,
    )
    .await;
    assert_eq!(
        (status, got),
        (400, json!({"non_field_errors": ["短信验证码错误"]}))
    );
    assert_eq!(
        app.redis_get(&format!("sms_attempts_{MOBILE}")).as_deref(),
        Some("1")
    );
    let ttl = app.redis_ttl(&format!("sms_attempts_{MOBILE}"));
    assert!((1..=300).contains(&ttl), "{ttl}");
    assert_eq!(
        app.redis_get(&format!("sms_{MOBILE}")).as_deref(),
        Some(CODE)
    );

    // Four wrong guesses in all still leave the right code usable.
    for _ in 0..3 {
        let (status, _) = status_and_json(
            app.register(&registration("alice123", MOBILE, "000000"))
                .await,
        )
        .await;
        assert_eq!(status, 400);
    }
    assert_eq!(
        app.redis_get(&format!("sms_attempts_{MOBILE}")).as_deref(),
        Some("4")
    );
    let res = app.register(&registration("alice123", MOBILE, CODE)).await;
    assert_registered(&app, res, "alice123", MOBILE, "password123").await;
}

#[tokio::test]
async fn five_wrong_codes_delete_it_so_even_the_right_one_is_then_invalid() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    for attempt in 1..=5 {
        let (status, got) = status_and_json(
            app.register(&registration("alice123", MOBILE, "999999"))
                .await,
        )
        .await;
        assert_eq!(
            (status, got),
            (400, json!({"non_field_errors": ["短信验证码错误"]})),
            "attempt {attempt}"
        );
        let stored = app.redis_get(&format!("sms_{MOBILE}"));
        assert_eq!(stored.is_some(), attempt < 5, "after attempt {attempt}");
    }
    let (status, got) =
        status_and_json(app.register(&registration("alice123", MOBILE, CODE)).await).await;
    assert_eq!(
        (status, got),
        (400, json!({"non_field_errors": ["无效的短信验证码"]}))
    );
    assert_eq!(app.user_count(), 0);
}

#[tokio::test]
async fn forty_concurrent_wrong_codes_get_at_most_five_comparisons() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    // 40 different wrong codes, none of them the stored one, sent at the same instant.
    let bodies: Vec<Value> = (0..40)
        .map(|i| registration("alice123", MOBILE, &format!("{:06}", 900_000 + i)))
        .collect();
    let results = futures::future::join_all(
        bodies
            .iter()
            .map(|b| async { status_and_json(app.register(b).await).await }),
    )
    .await;
    let wrong = (400, json!({"non_field_errors": ["短信验证码错误"]}));
    let invalid = (400, json!({"non_field_errors": ["无效的短信验证码"]}));
    let wrongs = results.iter().filter(|r| **r == wrong).count();
    assert!(wrongs <= 5, "{wrongs} guesses were compared: {results:?}");
    // Every request reached the check (none was refused earlier), so exactly five were
    // compared and every other one found the code already deleted.
    assert_eq!(wrongs, 5, "{results:?}");
    for r in results.iter().filter(|r| **r != wrong) {
        assert_eq!(r, &invalid);
    }
    assert_eq!(app.redis_get(&format!("sms_{MOBILE}")), None);
    assert_eq!(
        app.redis_get(&format!("sms_attempts_{MOBILE}")).as_deref(),
        Some("5"),
        "only compared guesses are counted"
    );
    let (status, got) =
        status_and_json(app.register(&registration("alice123", MOBILE, CODE)).await).await;
    assert_eq!((status, got), invalid);
    assert_eq!(app.user_count(), 0);
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    for line in [
        r#"users_registrations_total{outcome="sms_code_wrong",service="users-svc"} 5"#,
        r#"users_registrations_total{outcome="sms_code_invalid",service="users-svc"} 36"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_code_that_differs_in_length_or_in_any_one_byte_is_wrong() {
    let app = spawn_app().await;
    let cases = [
        ("a prefix of the code", "12345"),
        ("the code and one more digit", "1234567"),
        ("the code twice", "123456123456"),
        ("first byte differs", "023456"),
        ("last byte differs", "123457"),
        ("one byte", "1"),
        ("multi-byte characters of the same byte length", "１２"),
        (
            "a NUL-free long guess",
            "1234560000000000000000000000000000000000",
        ),
    ];
    for (why, guess) in cases {
        app.store_sms_code(MOBILE, CODE);
        let (status, got) =
            status_and_json(app.register(&registration("alice123", MOBILE, guess)).await).await;
        assert_eq!(
            (status, got),
            (400, json!({"non_field_errors": ["短信验证码错误"]})),
            "{why}"
        );
        assert_eq!(
            app.redis_get(&format!("sms_attempts_{MOBILE}")).as_deref(),
            Some("1"),
            "{why}: counted once"
        );
        assert_eq!(
            app.redis_get(&format!("sms_{MOBILE}")).as_deref(),
            Some(CODE),
            "{why}: the code stays"
        );
        redis::cmd("DEL")
            .arg(format!("sms_attempts_{MOBILE}"))
            .query::<()>(&mut app.redis_conn())
            .expect("DEL");
    }
    assert_eq!(app.user_count(), 0);
}

/// At the production cost: the nineteen that lose wait for the one in flight instead of
/// hashing, so none is refused for want of a hashing slot (it used to be 2 × 503 a round).
#[tokio::test]
async fn twenty_concurrent_registrations_of_one_username_create_exactly_one_account() {
    let app = spawn_app_with(Options::env(&[("BCRYPT_COST", "12")])).await;
    let bodies: Vec<Value> = (0..20)
        .map(|i| {
            let mobile = format!("1390000{i:04}");
            app.store_sms_code(&mobile, CODE);
            registration("samename1", &mobile, CODE)
        })
        .collect();
    let results = futures::future::join_all(
        bodies
            .iter()
            .map(|b| async { status_and_json(app.register(b).await).await }),
    )
    .await;
    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{results:?}");
    let losers: Vec<&(u16, Value)> = results.iter().filter(|(s, _)| *s != 201).collect();
    assert_eq!(losers.len(), 19);
    for (status, body) in losers {
        assert_eq!(
            (*status, body),
            (400, &json!({"username": ["已存在一位使用该名字的用户。"]}))
        );
    }
    assert_eq!(app.user_count(), 1);
    let winner = created[0]["mobile"].as_str().expect("mobile");
    assert_eq!(app.redis_get(&format!("sms_{winner}")), None);
    assert_eq!(
        app.db.scalar("SELECT mobile FROM tb_users").as_deref(),
        Some(winner)
    );
}

/// Admission follows the expected wait, not a count: forty registrations at once at the
/// production cost all get in when the wait they face is allowed (the old fixed queue of
/// 8 × cores refused 22 of them), and every one is created.
#[tokio::test]
async fn forty_concurrent_distinct_registrations_at_cost_12_are_all_created() {
    let app = spawn_app_with(Options::env(&[
        ("BCRYPT_COST", "12"),
        ("HASH_MAX_WAIT_MS", "120000"),
    ]))
    .await;
    let bodies: Vec<Value> = (0..40)
        .map(|i| {
            let mobile = format!("1370000{i:04}");
            app.store_sms_code(&mobile, CODE);
            registration(&format!("forty{i:04}"), &mobile, CODE)
        })
        .collect();
    // Forty hashes of a quarter second each on two cores can outlast the usual 30 s client
    // timeout on a busy machine; the service itself bounds nothing here but the admission.
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client");
    let results = futures::future::join_all(bodies.iter().map(|b| {
        let request = patient
            .post(format!("{}/users/", app.address))
            .json(b)
            .send();
        async { status_and_json(request.await.expect("request sent")).await }
    }))
    .await;
    for (body, (status, answer)) in bodies.iter().zip(&results) {
        let username = body["username"].as_str().expect("username");
        let id: i64 = row(&app, username)[0].parse().expect("id");
        let token = answer["token"].as_str().unwrap_or_default();
        assert_eq!(
            (*status, answer),
            (
                201,
                &json!({"id": id, "username": username, "mobile": body["mobile"], "token": token})
            )
        );
    }
    assert_eq!(app.user_count(), 40);
}

#[tokio::test]
async fn twenty_concurrent_registrations_of_one_mobile_create_exactly_one_account() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    let bodies: Vec<Value> = (0..20)
        .map(|i| registration(&format!("user{i:04}"), MOBILE, CODE))
        .collect();
    let results = futures::future::join_all(
        bodies
            .iter()
            .map(|b| async { status_and_json(app.register(b).await).await }),
    )
    .await;
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "{results:?}"
    );
    for (status, body) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(
            (*status, body),
            (400, &json!({"mobile": ["具有 手机号 的 用户 已存在。"]}))
        );
    }
    assert_eq!(app.user_count(), 1);
    assert_eq!(app.redis_get(&format!("sms_{MOBILE}")), None);
}

/// Poll `/metrics` until it has `line` (a state the test must wait for, instead of guessing a
/// sleep that a loaded machine could outlast); panics after 30 s.
async fn wait_for_metric(app: &TestApp, line: &str) {
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

#[tokio::test]
async fn losing_the_race_at_the_insert_is_the_same_400_not_a_5xx() {
    // Cost 14 makes the hash take long enough (~1 s) to slip a row in between the
    // availability pre-check and the INSERT.
    let app = spawn_app_with(Options::env(&[("BCRYPT_COST", "14")])).await;
    app.store_sms_code(MOBILE, CODE);
    let body = registration("racer123", MOBILE, CODE);
    let request = app.register(&body);
    let sneak = async {
        // The hash has started, so the availability pre-check has passed: slip the row in now.
        wait_for_metric(&app, r#"users_hash_in_progress{service="users-svc"} 1"#).await;
        app.insert_user("RACER123", "13900139000");
    };
    let (res, ()) = tokio::join!(request, sneak);
    let (status, got) = status_and_json(res).await;
    assert_eq!(
        (status, got),
        (400, json!({"username": ["已存在一位使用该名字的用户。"]}))
    );
    // A hash ran, so the availability pre-check had passed: the unique index decided.
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains(r#"users_password_hash_seconds_count{service="users-svc"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"users_registrations_total{outcome="taken",service="users-svc"} 1"#),
        "{metrics}"
    );

    assert_eq!(app.user_count(), 1);
    assert_eq!(
        app.redis_get(&format!("sms_{MOBILE}")).as_deref(),
        Some(CODE),
        "a failed registration leaves the code"
    );
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_at_once() {
    let app = spawn_app_with(Options::env(&[
        ("BCRYPT_COST", "14"),
        ("HASH_CONCURRENCY", "1"),
        ("HASH_MAX_WAIT_MS", "0"),
    ]))
    .await;
    app.store_sms_code(MOBILE, CODE);
    app.store_sms_code("13900139000", CODE);
    let started = Instant::now();
    let body = registration("first123", MOBILE, CODE);
    let first = async {
        let res = app.register(&body).await;
        (res, started.elapsed())
    };
    let second = async {
        // Wait until the first one holds the only hashing slot.
        wait_for_metric(&app, r#"users_hash_in_progress{service="users-svc"} 1"#).await;
        let res = app
            .register(&registration("second12", "13900139000", CODE))
            .await;
        (res, started.elapsed())
    };
    let ((first, first_done), (second, second_done)) = tokio::join!(first, second);
    assert_eq!(second.headers()["retry-after"], "5");
    let (status, body) = status_and_json(second).await;
    assert_eq!(
        (status, body),
        (503, json!({"detail": "服务暂时不可用，请稍后重试"}))
    );
    // Refused at once: the answer came while the first hash was still running, not after it.
    assert!(
        second_done < first_done,
        "second answered at {second_done:?}, first at {first_done:?}"
    );
    assert_eq!(first.status(), 201);
    assert_eq!(app.redis_get("sms_13900139000").as_deref(), Some(CODE));
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    for line in [
        r#"users_registrations_total{outcome="busy",service="users-svc"} 1"#,
        r#"users_registrations_total{outcome="created",service="users-svc"} 1"#,
        r#"users_hash_queue_depth{service="users-svc"} 0"#,
        r#"users_hash_in_progress{service="users-svc"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn malformed_bodies_get_a_4xx_json_answer() {
    let app = spawn_app().await;
    // 10,000 opening brackets fit the 16 KiB limit, so the parser's depth limit is what answers.
    let nested = "[".repeat(10_000);
    let megabyte = format!(r#"{{"username": "{}"}}"#, "a".repeat(1 << 20));
    // serde_json's messages (pinned by Cargo.lock) are passed through as DRF passes its parser's.
    let cases: Vec<(&str, &str, Vec<u8>, u16, Value)> = vec![
        (
            "invalid JSON",
            "application/json",
            b"{\"username\": ".to_vec(),
            400,
            json!({"detail": "JSON parse error - EOF while parsing a value at line 1 column 13"}),
        ),
        (
            "a list",
            "application/json",
            b"[1, 2]".to_vec(),
            400,
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
        ),
        (
            "a number",
            "application/json",
            b"5".to_vec(),
            400,
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got int."]}),
        ),
        (
            "nested 10,000 levels",
            "application/json",
            nested.into_bytes(),
            400,
            json!({"detail": "JSON parse error - recursion limit exceeded at line 1 column 128"}),
        ),
        (
            "1 MB",
            "application/json",
            megabyte.into_bytes(),
            413,
            json!({"detail": "请求体过大。"}),
        ),
        (
            "raw NUL bytes",
            "application/json",
            b"{\"username\": \"ab\0cde\"}".to_vec(),
            400,
            json!({"detail": "JSON parse error - control character (\\u0000-\\u001F) found while parsing a string at line 1 column 17"}),
        ),
        (
            "invalid UTF-8",
            "application/json",
            b"{\"username\": \"\xff\xfe\"}".to_vec(),
            400,
            json!({"detail": "JSON parse error - invalid unicode code point at line 1 column 15"}),
        ),
        (
            "plain text",
            "text/plain",
            b"username=x".to_vec(),
            415,
            json!({"detail": "不支持请求中的媒体类型 “text/plain”。"}),
        ),
    ];
    for (why, content_type, body, want_status, want) in cases {
        let (status, got) = status_and_json(app.register_raw(content_type, body).await).await;
        assert_eq!((status, got), (want_status, want), "{why}");
    }
    assert_eq!(app.user_count(), 0);
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains(r#"users_registrations_total{outcome="malformed",service="users-svc"} 8"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_password_never_reaches_mariadb_in_plain_text_not_even_in_the_first_insert() {
    let app = spawn_app().await;
    // The harness's shared server is ours to log on; only statements naming this test's unique
    // user are looked at.
    app.db.query("SET GLOBAL log_output = 'TABLE'");
    app.db.query("SET GLOBAL general_log = 1");
    let username = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let password = format!("P{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    app.store_sms_code(MOBILE, CODE);
    let mut body = registration(&username, MOBILE, CODE);
    body["password"] = json!(password);
    body["password2"] = json!(password);
    let res = app.register(&body).await;
    assert_eq!(res.status(), 201);
    let statements = app.db.query(&format!(
        "SELECT command_type, CONVERT(argument USING utf8mb4) FROM mysql.general_log \
         WHERE (CONVERT(argument USING utf8mb4) LIKE '%{username}%' OR CONVERT(argument USING utf8mb4) LIKE '%{password}%') \
         AND CONVERT(argument USING utf8mb4) NOT LIKE '%general_log%'"
    ));
    let inserts: Vec<&Vec<String>> = statements
        .iter()
        .filter(|r| r[1].to_ascii_uppercase().contains("INSERT INTO"))
        .collect();
    assert_eq!(inserts.len(), 1, "{statements:?}");
    assert!(
        inserts[0][1].contains("bcrypt_sha256$$2b$10$"),
        "{:?}",
        inserts[0]
    );
    assert!(
        statements.iter().all(|r| !r[1].contains(&password)),
        "the plain password was sent to MariaDB: {statements:?}"
    );
    assert!(
        statements
            .iter()
            .all(|r| !r[1].to_ascii_uppercase().contains("UPDATE")),
        "the row is written once: {statements:?}"
    );
    app.db.query("SET GLOBAL general_log = 0");
}

#[tokio::test]
async fn mariadb_down_answers_503_and_the_service_recovers_by_itself() {
    let mut db = harness::MariaDbServer::start();
    let app = spawn_app_with(Options {
        database_url: Some(db.url()),
        ..Options::default()
    })
    .await;
    app.store_sms_code(MOBILE, CODE);
    // Warm both workers' pools (concurrent requests spread over the HTTP workers), so that dead
    // pooled connections are part of the test.
    let warm =
        futures::future::join_all((0..8).map(|_| app.get("/mobiles/13800138000/count/"))).await;
    assert!(warm.iter().all(|r| r.status() == 200));
    db.stop();
    for path in ["/mobiles/13800138000/count/", "/usernames/alice123/count/"] {
        let res = app.get(path).await;
        assert_eq!(res.headers()["retry-after"], "5");
        let (status, body) = status_and_json(res).await;
        assert_eq!(
            (status, body),
            (503, json!({"detail": "服务暂时不可用，请稍后重试"})),
            "{path}"
        );
    }
    let res = app.register(&registration("alice123", MOBILE, CODE)).await;
    let (status, body) = status_and_json(res).await;
    assert_eq!(
        (status, body),
        (503, json!({"detail": "服务暂时不可用，请稍后重试"}))
    );
    let (status, body) = status_and_json(app.get("/readyz").await).await;
    assert_eq!(status, 503);
    assert!(body["failed"]["database"].is_string(), "{body}");
    assert!(body["failed"].get("redis").is_none(), "{body}");

    db.restart();
    // No restart of the service, and no 503 once MariaDB is back: a stale pooled connection is
    // replaced before or after its query (see `mariadb_faults.rs`).
    let (status, _) =
        status_and_json(app.register(&registration("alice123", MOBILE, CODE)).await).await;
    assert_eq!(status, 201);
    assert_eq!(db.query("SELECT username FROM tb_users"), "alice123");
    let (status, body) = status_and_json(app.get("/readyz").await).await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
    assert_eq!(app.redis_get(&format!("sms_{MOBILE}")), None);
}

#[tokio::test]
async fn redis_down_answers_503() {
    let mut server = harness::RedisServer::start();
    let app = crate::helpers::spawn_app_with_redis(server.url(0)).await;
    server.stop();
    let res = app.register(&registration("alice123", MOBILE, CODE)).await;
    let (status, body) = status_and_json(res).await;
    assert_eq!(
        (status, body),
        (503, json!({"detail": "服务暂时不可用，请稍后重试"}))
    );
    assert_eq!(app.user_count(), 0);
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

#[tokio::test]
async fn django_accepts_our_stored_hashes_and_we_accept_djangos() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    let password = "密码 pass ✓ 1";
    let mut body = registration("django12", MOBILE, CODE);
    body["password"] = json!(password);
    body["password2"] = json!(password);
    assert_eq!(app.register(&body).await.status(), 201);
    let stored = app
        .db
        .scalar("SELECT password FROM tb_users")
        .expect("a row");
    let verify = "print(h.verify(sys.argv[1], sys.argv[2]))";
    assert_eq!(passlib(verify, &[password, &stored]), "True");
    assert_eq!(passlib(verify, &["密码 pass ✓ 2", &stored]), "False");

    let theirs = passlib("print(h.using(rounds=10).hash(sys.argv[1]))", &[password]);
    assert!(theirs.starts_with("bcrypt_sha256$$2b$10$"), "{theirs}");
    assert!(users_svc::domain::password::verify(password, &theirs));
    assert!(!users_svc::domain::password::verify(
        "密码 pass ✓ 2",
        &theirs
    ));
}

#[tokio::test]
async fn other_methods_are_405() {
    let app = spawn_app().await;
    let (status, body) = status_and_json(app.get("/users/").await).await;
    assert_eq!(
        (status, body),
        (405, json!({"detail": "方法 “GET” 不被允许。"}))
    );
}

#[tokio::test]
async fn allowed_origins_get_cors_headers_and_others_none() {
    let app = spawn_app_with(Options::env(&[(
        "CORS_ALLOWED_ORIGINS",
        "https://www.meiduo.site",
    )]))
    .await;
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/users/", app.address))
        .header("origin", "https://www.meiduo.site")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("sent");
    assert_eq!(preflight.status(), 200);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://www.meiduo.site");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-headers"], "content-type");

    for (origin, allowed) in [
        ("https://www.meiduo.site", true),
        ("https://evil.example", false),
    ] {
        let res = app
            .http
            .post(format!("{}/users/", app.address))
            .header("origin", origin)
            .json(&json!({}))
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), 400, "{origin}");
        assert_eq!(
            res.headers().get("access-control-allow-origin").is_some(),
            allowed,
            "{origin}"
        );
    }
}

#[tokio::test]
async fn duplicates_on_unique_indexes_named_like_djangos_are_still_field_errors() {
    // Two instances on one database: within one, registrations of a name wait for each other
    // (and see the row), so it takes two to race to the INSERT as separate machines do.
    let app = spawn_app().await;
    let other = app.second_instance().await;
    // A table made by Django names its unique indexes after the columns.
    app.db.query(
        "ALTER TABLE tb_users RENAME INDEX tb_users_username_uniq TO username, \
         RENAME INDEX tb_users_mobile_uniq TO mobile",
    );
    let bodies: Vec<Value> = (0..10)
        .map(|i| {
            let mobile = format!("1390000{i:04}");
            app.store_sms_code(&mobile, CODE);
            registration("samename1", &mobile, CODE)
        })
        .collect();
    let instances = [app.address.clone(), other];
    let results = futures::future::join_all(bodies.iter().enumerate().map(|(i, b)| {
        let request = app
            .http
            .post(format!("{}/users/", instances[i % 2]))
            .json(b)
            .send();
        async { status_and_json(request.await.expect("request sent")).await }
    }))
    .await;
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "{results:?}"
    );
    for (status, body) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(
            (*status, body),
            (400, &json!({"username": ["已存在一位使用该名字的用户。"]}))
        );
    }
    // More than one hash ran: requests past the pre-check met the index at the INSERT.
    let mut hashes = 0;
    for instance in &instances {
        let metrics = app
            .http
            .get(format!("{instance}/metrics"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("metrics")
            .text()
            .await
            .expect("metrics");
        hashes += metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(r#"users_password_hash_seconds_count{service="users-svc"} "#)
            })
            .and_then(|n| n.parse::<u64>().ok())
            .expect("hash count");
    }
    assert!(hashes > 1, "{hashes} hashes");
    assert_eq!(app.user_count(), 1);
}

/// The value of `users_registrations_total{outcome}` (0 when the series does not exist yet).
async fn outcome_count(app: &TestApp, outcome: &str) -> u64 {
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    let prefix =
        format!(r#"users_registrations_total{{outcome="{outcome}",service="users-svc"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.parse().expect("a count"))
}

#[tokio::test]
async fn registrations_spend_the_count_endpoints_per_ip_limit_before_any_lookup() {
    let app = spawn_app_with(Options::env(&[("COUNT_LIMIT_PER_IP_PER_MINUTE", "3")])).await;
    app.insert_user("taken123", "13900139000");
    app.store_sms_code(MOBILE, CODE);
    let counter = || app.redis_get("rl:count_ip:127.0.0.1");

    // 1: a count.
    assert_eq!(app.get("/usernames/alice123/count/").await.status(), 200);
    // Not counted: no valid username or mobile, so nothing is looked up.
    let (status, _) = status_and_json(app.register(&json!({})).await).await;
    assert_eq!((status, counter().as_deref()), (400, Some("1")));
    // 2: a registration whose lookup answers "taken".
    let (status, got) = status_and_json(
        app.register(&registration("taken123", "13700137000", CODE))
            .await,
    )
    .await;
    assert_eq!(
        (status, got),
        (400, json!({"username": ["已存在一位使用该名字的用户。"]}))
    );
    // 3: a count again.
    assert_eq!(app.get("/mobiles/13900139000/count/").await.status(), 200);
    assert_eq!(counter().as_deref(), Some("3"));

    // 4 and 5: over the limit. The taken name is not revealed and the valid registration
    // (right code) creates nothing: both are refused before the lookup.
    for (why, body) in [
        ("taken name", registration("taken123", "13700137000", CODE)),
        ("valid registration", registration("alice123", MOBILE, CODE)),
    ] {
        let res = app.register(&body).await;
        let retry: u64 = res.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry), "{why}: {retry}");
        let text = res.text().await.expect("body");
        assert_eq!(
            text, r#"{"detail":"请求次数过于频繁，请稍后再试"}"#,
            "{why}"
        );
    }
    // The counts are refused too: one budget.
    assert_eq!(app.get("/usernames/alice123/count/").await.status(), 429);
    assert_eq!(counter().as_deref(), Some("6"));
    assert_eq!(app.user_count(), 1, "only the inserted account");
    assert_eq!(
        app.redis_get(&format!("sms_{MOBILE}")).as_deref(),
        Some(CODE)
    );
    assert_eq!(outcome_count(&app, "throttled").await, 2);
    assert_eq!(outcome_count(&app, "taken").await, 1, "no lookup after 3");
    assert_eq!(outcome_count(&app, "created").await, 0);
}

/// Redis restarts (data kept) between the requests of one client, with no pause: a count, a
/// second count and a registration that reads the SMS code all answer as if nothing happened.
/// Each restart closes the HTTP worker's Redis connection; the next command must get a fresh
/// one instead of the closed socket's error.
#[tokio::test]
async fn a_redis_restart_between_two_requests_costs_the_user_nothing() {
    let mut server = harness::RedisServer::start();
    let app = crate::helpers::spawn_app_with_redis(server.url(0)).await;
    let mut conn = redis::Client::open(server.url(0))
        .expect("URL")
        .get_connection()
        .expect("connect");
    redis::cmd("SETEX")
        .arg(format!("sms_{MOBILE}"))
        .arg(300)
        .arg(CODE)
        .query::<()>(&mut conn)
        .expect("SETEX");

    let res = app.get("/usernames/alice123/count/").await;
    let (status, body) = status_and_json(res).await;
    assert_eq!(
        (status, body),
        (200, json!({"username": "alice123", "count": 0}))
    );
    server.restart_keeping_data();
    let res = app.get(&format!("/mobiles/{MOBILE}/count/")).await;
    let (status, body) = status_and_json(res).await;
    assert_eq!(
        (status, body),
        (200, json!({"mobile": MOBILE, "count": 0})),
        "a count right after a restart"
    );
    server.restart_keeping_data();
    let res = app.register(&registration("alice123", MOBILE, CODE)).await;
    assert_registered(&app, res, "alice123", MOBILE, "password123").await;
    let mut conn = redis::Client::open(server.url(0))
        .expect("URL")
        .get_connection()
        .expect("connect");
    let left: Option<String> = redis::cmd("GET")
        .arg(format!("sms_{MOBILE}"))
        .query(&mut conn)
        .expect("GET");
    assert_eq!(left, None, "the code was read and then consumed");
}
