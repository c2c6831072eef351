//! `POST /users/`: success (JSON and form), every field error in the serializer's order, taken values, malformed bodies, 405, CORS.

use super::*;

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
