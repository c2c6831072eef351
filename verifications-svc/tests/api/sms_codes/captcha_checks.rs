//! `GET /sms_codes/`: the field checks and the captcha checks, in the original's order, each using the captcha up.

use super::*;

#[tokio::test]
async fn field_errors_are_collected_for_both_fields_and_consume_nothing() {
    let app = spawn_app().await;
    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    let cases = [
        (
            "no query",
            String::new(),
            r#"{"image_code_id":["该字段是必填项。"],"text":["该字段是必填项。"]}"#,
        ),
        (
            "no text",
            format!("image_code_id={id}"),
            r#"{"text":["该字段是必填项。"]}"#,
        ),
        (
            "no id",
            "text=ACDE".to_owned(),
            r#"{"image_code_id":["该字段是必填项。"]}"#,
        ),
        (
            "both blank",
            "image_code_id=&text=".to_owned(),
            r#"{"image_code_id":["Must be a valid UUID."],"text":["该字段不能为空。"]}"#,
        ),
        (
            "text only spaces",
            format!("image_code_id={id}&text=%20%20%20%20"),
            r#"{"text":["该字段不能为空。"]}"#,
        ),
        (
            "bad id, short text",
            "image_code_id=1234&text=AC".to_owned(),
            r#"{"image_code_id":["Must be a valid UUID."],"text":["请确保这个字段至少包含 4 个字符。"]}"#,
        ),
        (
            "text too long",
            format!("image_code_id={id}&text=ACDEF"),
            r#"{"text":["请确保这个字段不能超过 4 个字符。"]}"#,
        ),
        (
            "five Chinese characters are five, not fifteen bytes",
            format!("image_code_id={id}&text={}", "%E5%9B%BE".repeat(5)),
            r#"{"text":["请确保这个字段不能超过 4 个字符。"]}"#,
        ),
        (
            "three emoji are three characters",
            format!("image_code_id={id}&text={}", "%F0%9F%98%80".repeat(3)),
            r#"{"text":["请确保这个字段至少包含 4 个字符。"]}"#,
        ),
        (
            "10 KB text",
            format!("image_code_id={id}&text={}", "A".repeat(10_000)),
            r#"{"text":["请确保这个字段不能超过 4 个字符。"]}"#,
        ),
        (
            "10 KB id",
            format!("image_code_id={}&text=ACDE", "f".repeat(10_000)),
            r#"{"image_code_id":["Must be a valid UUID."]}"#,
        ),
        (
            "NUL in the id",
            format!("image_code_id=%00{id}&text=ACDE"),
            r#"{"image_code_id":["Must be a valid UUID."]}"#,
        ),
        (
            "names are case-sensitive",
            format!("IMAGE_CODE_ID={id}&TEXT=ACDE"),
            r#"{"image_code_id":["该字段是必填项。"],"text":["该字段是必填项。"]}"#,
        ),
    ];
    for (why, query, want) in cases {
        let res = app.get(&format!("/sms_codes/{MOBILE}/?{query}")).await;
        assert_eq!(res.headers()["content-type"], "application/json", "{why}");
        let (status, body) = status_and_body(res).await;
        assert_eq!((status, body.as_str()), (400, want), "{why}");
    }
    assert_eq!(app.value(&format!("img_{id}")).as_deref(), Some("ACDE"));
    assert_eq!(app.value(&format!("send_flag_{MOBILE}")), None);
    assert!(app.queued_jobs().is_empty());
    assert_eq!(
        app.metric(
            r#"sms_sends_refused_total{reason="invalid_input",service="verifications-svc"}"#
        )
        .await,
        13
    );
}

#[tokio::test]
async fn an_unknown_or_used_captcha_is_invalid() {
    let app = spawn_app().await;
    let (status, body) = status_and_body(app.sms_code(MOBILE, &new_id(), "ACDE").await).await;
    assert_eq!((status, body.as_str()), (400, INVALID));

    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    assert_eq!(app.sms_code(MOBILE, &id, "ACDE").await.status(), 200);
    let _: () = app
        .redis_conn()
        .del(format!("send_flag_{MOBILE}"))
        .expect("DEL");
    let (status, body) = status_and_body(app.sms_code(MOBILE, &id, "ACDE").await).await;
    assert_eq!(
        (status, body.as_str()),
        (400, INVALID),
        "a captcha works once"
    );
    assert_eq!(app.queued_jobs().len(), 1);
}

#[tokio::test]
async fn a_wrong_text_is_an_error_and_still_uses_the_captcha_up() {
    let app = spawn_app().await;
    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    let (status, body) = status_and_body(app.sms_code(MOBILE, &id, "ACDF").await).await;
    assert_eq!((status, body.as_str()), (400, WRONG));
    assert_eq!(
        app.value(&format!("img_{id}")),
        None,
        "GETDEL even when wrong"
    );
    let (status, body) = status_and_body(app.sms_code(MOBILE, &id, "ACDE").await).await;
    assert_eq!((status, body.as_str()), (400, INVALID), "no second guess");
    assert_eq!(app.value(&format!("sms_{MOBILE}")), None);
    assert!(app.queued_jobs().is_empty());
    assert_eq!(
        app.metric(
            r#"sms_sends_refused_total{reason="image_code_wrong",service="verifications-svc"}"#
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_checks_run_in_the_originals_order() {
    let app = spawn_app().await;
    let _: () = app
        .redis_conn()
        .set_ex(format!("send_flag_{MOBILE}"), "1", 60)
        .expect("SETEX");
    // 1. captcha missing beats the resend guard.
    let (status, body) = status_and_body(app.sms_code(MOBILE, &new_id(), "ACDE").await).await;
    assert_eq!((status, body.as_str()), (400, INVALID), "missing first");
    // 2. a wrong text beats it too.
    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    let (status, body) = status_and_body(app.sms_code(MOBILE, &id, "XXXX").await).await;
    assert_eq!((status, body.as_str()), (400, WRONG), "wrong second");
    // 3. a right text meets the resend guard, and the captcha is used up.
    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    let (status, body) = status_and_body(app.sms_code(MOBILE, &id, "ACDE").await).await;
    assert_eq!(
        (status, body.as_str()),
        (400, FREQUENT),
        "recent send third"
    );
    assert_eq!(app.value(&format!("img_{id}")), None);
    assert_eq!(app.value(&format!("sms_{MOBILE}")), None);
    assert!(app.queued_jobs().is_empty());
    // The guard did not count against the limits.
    assert_eq!(app.value(&format!("rl:sms_mobile:{MOBILE}")), None);
}

#[tokio::test]
async fn malformed_paths_queries_and_methods_answer_4xx_json_never_5xx() {
    let app = spawn_app().await;
    let id = new_id();
    let post = r#"{"detail":"方法 “POST” 不被允许。"}"#;
    let cases: Vec<(&str, &str, String, u16, Option<&str>)> = vec![
        (
            "mobile too short",
            "GET",
            "/sms_codes/1381234567/".into(),
            404,
            Some(NOT_FOUND),
        ),
        (
            "mobile too long",
            "GET",
            "/sms_codes/138123456789/".into(),
            404,
            Some(NOT_FOUND),
        ),
        (
            "second digit 2",
            "GET",
            "/sms_codes/12812345678/".into(),
            404,
            Some(NOT_FOUND),
        ),
        (
            "letters",
            "GET",
            "/sms_codes/1381234567a/".into(),
            404,
            Some(NOT_FOUND),
        ),
        (
            "full-width digits",
            "GET",
            format!("/sms_codes/{}/", "%EF%BC%91".repeat(11)),
            404,
            Some(NOT_FOUND),
        ),
        (
            "NUL in mobile",
            "GET",
            "/sms_codes/1381234567%00/".into(),
            404,
            Some(NOT_FOUND),
        ),
        (
            "plus prefix",
            "GET",
            "/sms_codes/+8613812345678/".into(),
            404,
            Some(NOT_FOUND),
        ),
        (
            "no trailing slash",
            "GET",
            format!("/sms_codes/{MOBILE}"),
            404,
            Some(NOT_FOUND),
        ),
        (
            "no mobile",
            "GET",
            "/sms_codes//".into(),
            404,
            Some(NOT_FOUND),
        ),
        (
            "10 KB mobile",
            "GET",
            format!("/sms_codes/{}/", "1".repeat(10_000)),
            404,
            Some(NOT_FOUND),
        ),
        (
            "POST",
            "POST",
            format!("/sms_codes/{MOBILE}/?image_code_id={id}&text=ACDE"),
            405,
            Some(post),
        ),
        (
            "PUT",
            "PUT",
            format!("/sms_codes/{MOBILE}/"),
            405,
            Some(r#"{"detail":"方法 “PUT” 不被允许。"}"#),
        ),
        (
            "DELETE",
            "DELETE",
            format!("/sms_codes/{MOBILE}/"),
            405,
            Some(r#"{"detail":"方法 “DELETE” 不被允许。"}"#),
        ),
        (
            "POST to a bad mobile is an unknown route",
            "POST",
            "/sms_codes/123/".into(),
            404,
            Some(NOT_FOUND),
        ),
        (
            "10 KB junk query",
            "GET",
            format!("/sms_codes/{MOBILE}/?{}", "%00%FF&=&&==".repeat(900)),
            400,
            Some(r#"{"image_code_id":["该字段是必填项。"],"text":["该字段是必填项。"]}"#),
        ),
        (
            "NUL text of four characters reaches the captcha check",
            "GET",
            format!("/sms_codes/{MOBILE}/?image_code_id={id}&text=%00%00%00%00"),
            400,
            Some(INVALID),
        ),
        (
            "unicode text of four characters",
            "GET",
            format!(
                "/sms_codes/{MOBILE}/?image_code_id={id}&text=%E5%9B%BE%E7%89%87%E9%AA%8C%E8%AF%81"
            ),
            400,
            Some(INVALID),
        ),
        (
            "raw invalid UTF-8 is replaced",
            "GET",
            format!("/sms_codes/{MOBILE}/?image_code_id={id}&text=%FF%FF%FF%FF"),
            400,
            Some(INVALID),
        ),
        (
            "bare keys",
            "GET",
            format!("/sms_codes/{MOBILE}/?image_code_id&text"),
            400,
            Some(r#"{"image_code_id":["Must be a valid UUID."],"text":["该字段不能为空。"]}"#),
        ),
    ];
    for (why, method, path, status, body) in cases {
        let res = app
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", app.address),
            )
            .send()
            .await
            .expect("sent");
        assert_eq!(res.headers()["content-type"], "application/json", "{why}");
        let (s, b) = status_and_body(res).await;
        assert_eq!(s, status, "{why}: {b}");
        if let Some(body) = body {
            assert_eq!(b, body, "{why}");
        }
    }
    assert!(app.queued_jobs().is_empty());
}
