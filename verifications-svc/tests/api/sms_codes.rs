//! `GET /sms_codes/{mobile}/?image_code_id=&text=`.

use std::time::Duration;

use chrono::Utc;
use redis::Commands;

use crate::helpers::{Options, TestApp, new_id, spawn_app, spawn_app_with, status_and_body};

const MOBILE: &str = "13812345678";
const OK: &str = r#"{"message":"OK"}"#;
const INVALID: &str = r#"{"non_field_errors":["图片验证码无效"]}"#;
const WRONG: &str = r#"{"non_field_errors":["图片验证码错误"]}"#;
const FREQUENT: &str = r#"{"non_field_errors":["请求次数过于频繁"]}"#;
const THROTTLED: &str = r#"{"detail":"请求次数过于频繁，请稍后再试"}"#;
const UNAVAILABLE: &str = r#"{"detail":"服务暂时不可用，请稍后重试"}"#;
const NOT_FOUND: &str = r#"{"detail":"Not found."}"#;

/// Seed a captcha and ask for an SMS code with its right text.
async fn send(app: &TestApp, mobile: &str) -> reqwest::Response {
    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    app.sms_code(mobile, &id, "acde").await
}

/// Like [`send`], through a proxy that says the client is `xff`.
async fn send_from(app: &TestApp, mobile: &str, xff: &str) -> reqwest::Response {
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

#[tokio::test]
async fn a_right_captcha_issues_a_code_stores_it_and_queues_exactly_one_job() {
    let app = spawn_app().await;
    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    let _: () = app
        .redis_conn()
        .set_ex(format!("sms_attempts_{MOBILE}"), 3, 300)
        .expect("SETEX");
    let before = Utc::now();

    let (status, body) = status_and_body(app.sms_code(MOBILE, &id, "ACDE").await).await;
    assert_eq!((status, body.as_str()), (200, OK));

    assert_eq!(
        app.value(&format!("img_{id}")),
        None,
        "the captcha is used up"
    );
    let code = app
        .value(&format!("sms_{MOBILE}"))
        .expect("the code is stored");
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    let ttl = app.ttl(&format!("sms_{MOBILE}"));
    assert!((295..=300).contains(&ttl), "code TTL {ttl}");
    let flag_ttl = app.ttl(&format!("send_flag_{MOBILE}"));
    assert!((55..=60).contains(&flag_ttl), "flag TTL {flag_ttl}");
    assert_eq!(
        app.value(&format!("sms_attempts_{MOBILE}")),
        None,
        "attempt counter reset"
    );
    let day = app.ttl(&format!("rl:sms_mobile:{MOBILE}"));
    assert!((86_395..=86_400).contains(&day), "{day}");
    let hour = app.ttl("rl:sms_ip:127.0.0.1");
    assert!((3_595..=3_600).contains(&hour), "{hour}");

    let jobs = app.queued_jobs();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(job.mobile.as_str(), MOBILE);
    assert_eq!(job.code.as_str(), code);
    assert_eq!(job.ttl_minutes, 5);
    assert_eq!(job.template_id, "1");
    assert_eq!(job.request_id.get_version_num(), 4);
    assert_eq!(
        app.value(&format!("send_flag_{MOBILE}")),
        Some(job.request_id.to_string()),
        "the flag names the send that holds it"
    );
    assert!(
        job.created_at >= before - chrono::Duration::seconds(1) && job.created_at <= Utc::now()
    );
    assert_eq!(
        app.metric(r#"codes_issued_total{kind="sms",service="verifications-svc"}"#)
            .await,
        1
    );
}

#[tokio::test]
async fn the_text_is_compared_case_insensitively_after_trimming() {
    let app = spawn_app().await;
    for (mobile, stored, typed) in [
        ("13800000001", "ACDE", "acde"),
        ("13800000002", "ACDE", "aCdE"),
        ("13800000003", "AC34", " ac34\t"),
    ] {
        let id = new_id();
        app.seed_image_code(&id, stored);
        let (status, body) = status_and_body(app.sms_code(mobile, &id, typed).await).await;
        assert_eq!((status, body.as_str()), (200, OK), "{typed:?}");
    }
    assert_eq!(app.queued_jobs().len(), 3);
}

#[tokio::test]
async fn the_template_id_comes_from_sms_template_id() {
    let app = spawn_app_with(Options {
        env: vec![("SMS_TEMPLATE_ID", "42".to_owned())],
        ..Options::default()
    })
    .await;
    assert_eq!(send(&app, MOBILE).await.status(), 200);
    assert_eq!(app.queued_jobs()[0].template_id, "42");
}

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
async fn a_second_send_within_60_seconds_is_too_frequent() {
    let app = spawn_app().await;
    assert_eq!(send(&app, MOBILE).await.status(), 200);
    let code = app.value(&format!("sms_{MOBILE}"));
    let (status, body) = status_and_body(send(&app, MOBILE).await).await;
    assert_eq!((status, body.as_str()), (400, FREQUENT));
    assert_eq!(app.value(&format!("sms_{MOBILE}")), code, "first code kept");
    assert_eq!(
        send(&app, "13912345678").await.status(),
        200,
        "other mobiles are free"
    );
    assert_eq!(app.queued_jobs().len(), 2);
}

#[tokio::test]
async fn twenty_concurrent_requests_for_one_mobile_send_exactly_once() {
    let app = spawn_app().await;
    let ids: Vec<String> = (0..20).map(|_| new_id()).collect();
    for id in &ids {
        app.seed_image_code(id, "ACDE");
    }
    let results = futures::future::join_all(
        ids.iter()
            .map(|id| async { status_and_body(app.sms_code(MOBILE, id, "ACDE").await).await }),
    )
    .await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let frequent = results
        .iter()
        .filter(|r| (r.0, r.1.as_str()) == (400, FREQUENT))
        .count();
    assert_eq!((ok, frequent), (1, 19), "{results:?}");
    let jobs = app.queued_jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        app.value(&format!("sms_{MOBILE}")).as_deref(),
        Some(jobs[0].code.as_str())
    );
    assert_eq!(
        app.value(&format!("rl:sms_mobile:{MOBILE}")).as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn one_captcha_used_by_ten_concurrent_requests_succeeds_at_most_once() {
    let app = spawn_app().await;
    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    let mobiles: Vec<String> = (0..10).map(|i| format!("1370000000{i}")).collect();
    let results = futures::future::join_all(
        mobiles
            .iter()
            .map(|m| async { status_and_body(app.sms_code(m, &id, "ACDE").await).await }),
    )
    .await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let invalid = results
        .iter()
        .filter(|r| (r.0, r.1.as_str()) == (400, INVALID))
        .count();
    assert_eq!((ok, invalid), (1, 9), "{results:?}");
    assert_eq!(app.queued_jobs().len(), 1);
}

#[tokio::test]
async fn the_per_mobile_daily_limit_answers_429_with_retry_after() {
    let app = spawn_app_with(Options {
        env: vec![("SMS_SEND_LIMIT_PER_MOBILE_PER_DAY", "2".to_owned())],
        ..Options::default()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(send(&app, MOBILE).await.status(), 200);
        // As if 60 s had passed.
        let _: () = app
            .redis_conn()
            .del(format!("send_flag_{MOBILE}"))
            .expect("DEL");
    }
    let code = app.value(&format!("sms_{MOBILE}"));
    let res = send(&app, MOBILE).await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((86_390..=86_400).contains(&retry), "{retry}");
    let (status, body) = status_and_body(res).await;
    assert_eq!((status, body.as_str()), (429, THROTTLED));
    assert_eq!(
        app.value(&format!("send_flag_{MOBILE}")),
        None,
        "flag given back"
    );
    assert_eq!(app.value(&format!("sms_{MOBILE}")), code, "code untouched");
    assert_eq!(app.queued_jobs().len(), 2);
    assert_eq!(
        app.value(&format!("rl:sms_mobile:{MOBILE}")).as_deref(),
        Some("3"),
        "refused hits of the refusing limit still count"
    );
    assert_eq!(
        app.value("rl:sms_ip:127.0.0.1").as_deref(),
        Some("2"),
        "the mobile refusal did not count against the IP"
    );
    assert_eq!(
        send(&app, "13912345678").await.status(),
        200,
        "per mobile only"
    );
    assert_eq!(app.value("rl:sms_ip:127.0.0.1").as_deref(), Some("3"));
    assert_eq!(
        app.metric(r#"sms_sends_refused_total{reason="mobile_limit",service="verifications-svc"}"#)
            .await,
        1
    );
}

#[tokio::test]
async fn the_per_ip_hourly_limit_answers_429_with_retry_after() {
    let app = spawn_app_with(Options {
        env: vec![("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "2".to_owned())],
        ..Options::default()
    })
    .await;
    assert_eq!(send(&app, "13800000001").await.status(), 200);
    assert_eq!(send(&app, "13800000002").await.status(), 200);
    let res = send(&app, "13800000003").await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((3_590..=3_600).contains(&retry), "{retry}");
    let (status, body) = status_and_body(res).await;
    assert_eq!((status, body.as_str()), (429, THROTTLED));
    assert_eq!(app.value("send_flag_13800000003"), None);
    assert_eq!(app.value("sms_13800000003"), None);
    assert_eq!(app.queued_jobs().len(), 2);
    // A mobile that already has a send: the IP refusal must not use up its daily quota.
    let _: () = app.redis_conn().del("send_flag_13800000001").expect("DEL");
    let code = app.value("sms_13800000001");
    let (status, body) = status_and_body(send(&app, "13800000001").await).await;
    assert_eq!((status, body.as_str()), (429, THROTTLED));
    assert_eq!(app.value("sms_13800000001"), code, "code untouched");
    assert_eq!(
        app.value("rl:sms_ip:127.0.0.1").as_deref(),
        Some("4"),
        "refused hits of the refusing limit still count"
    );
    assert_eq!(
        app.value("rl:sms_mobile:13800000001").as_deref(),
        Some("1"),
        "the IP refusal did not count against the mobile"
    );
    assert_eq!(
        app.value("rl:sms_mobile:13800000003"),
        None,
        "no mobile counter for a send the IP limit refused"
    );
    assert_eq!(app.queued_jobs().len(), 2);
    assert_eq!(
        app.metric(r#"sms_sends_refused_total{reason="ip_limit",service="verifications-svc"}"#)
            .await,
        2
    );
}

#[tokio::test]
async fn x_forwarded_for_is_honoured_from_a_trusted_peer() {
    // The test client connects from 127.0.0.1, the default trusted proxy.
    let app = spawn_app_with(Options {
        env: vec![("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "1".to_owned())],
        ..Options::default()
    })
    .await;
    assert_eq!(
        send_from(&app, "13800000001", "198.51.100.1")
            .await
            .status(),
        200
    );
    assert_eq!(
        send_from(&app, "13800000002", "198.51.100.2")
            .await
            .status(),
        200
    );
    assert_eq!(
        send_from(&app, "13800000003", "6.6.6.6, 198.51.100.1")
            .await
            .status(),
        429,
        "the rightmost untrusted hop is the client"
    );
    assert_eq!(app.value("rl:sms_ip:198.51.100.1").as_deref(), Some("2"));
    assert_eq!(app.value("rl:sms_ip:198.51.100.2").as_deref(), Some("1"));
    assert_eq!(app.value("rl:sms_ip:127.0.0.1"), None);
}

#[tokio::test]
async fn ipv6_clients_are_limited_by_their_slash_64_and_mapped_ipv4_as_ipv4() {
    let app = spawn_app_with(Options {
        env: vec![("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "1".to_owned())],
        ..Options::default()
    })
    .await;
    let cases = [
        (
            "first address of a /64",
            "13800000001",
            "2001:db8:1:2::1",
            200,
        ),
        (
            "another address of the same /64 shares its counter",
            "13800000002",
            "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
            429,
        ),
        (
            "the next /64 is another client",
            "13800000003",
            "2001:db8:1:3::1",
            200,
        ),
        ("plain IPv4", "13800000004", "198.51.100.7", 200),
        (
            "IPv4-mapped IPv6 is the same IPv4 client",
            "13800000005",
            "::ffff:198.51.100.7",
            429,
        ),
    ];
    for (why, mobile, xff, want) in cases {
        assert_eq!(send_from(&app, mobile, xff).await.status(), want, "{why}");
    }
    assert_eq!(
        app.value("rl:sms_ip:2001:db8:1:2::/64").as_deref(),
        Some("2")
    );
    assert_eq!(
        app.value("rl:sms_ip:2001:db8:1:3::/64").as_deref(),
        Some("1")
    );
    assert_eq!(app.value("rl:sms_ip:198.51.100.7").as_deref(), Some("2"));
    assert_eq!(
        app.value("rl:sms_ip:2001:db8:1:2::1"),
        None,
        "no per-address key"
    );
    assert_eq!(app.value("rl:sms_ip:::ffff:198.51.100.7"), None);
    assert_eq!(app.value("rl:sms_ip:127.0.0.1"), None);
    assert_eq!(app.queued_jobs().len(), 3);
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_from_an_untrusted_peer() {
    let app = spawn_app_with(Options {
        env: vec![
            ("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "1".to_owned()),
            ("TRUSTED_PROXIES", "10.0.0.0/8".to_owned()),
        ],
        ..Options::default()
    })
    .await;
    assert_eq!(
        send_from(&app, "13800000001", "198.51.100.1")
            .await
            .status(),
        200
    );
    assert_eq!(
        send_from(&app, "13800000002", "198.51.100.2")
            .await
            .status(),
        429,
        "a forged header does not buy a fresh limit"
    );
    assert_eq!(app.value("rl:sms_ip:127.0.0.1").as_deref(), Some("2"));
    assert_eq!(app.value("rl:sms_ip:198.51.100.1"), None);
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

#[tokio::test]
async fn redis_down_is_a_503_and_redis_back_is_a_200_again_in_the_same_process() {
    let mut server = harness::RedisServer::start();
    let app = crate::helpers::spawn_app_with_redis(server.url(0)).await;
    let url = server.url(0);
    let seed = |id: &str| {
        let mut conn = redis::Client::open(url.as_str())
            .expect("URL")
            .get_connection()
            .expect("connect");
        let _: () = conn
            .set_ex(format!("img_{id}"), "ACDE", 300)
            .expect("SETEX");
    };
    let id = new_id();
    seed(&id);
    assert_eq!(app.sms_code(MOBILE, &id, "ACDE").await.status(), 200);

    server.stop();
    let res = app.sms_code("13912345678", &new_id(), "ACDE").await;
    assert_eq!(res.headers()["retry-after"], "5");
    let (status, body) = status_and_body(res).await;
    assert_eq!((status, body.as_str()), (503, UNAVAILABLE));

    server.restart();
    let id = new_id();
    let mut last = (0, String::new());
    for _ in 0..50 {
        seed(&id);
        last = status_and_body(app.sms_code("13912345678", &id, "ACDE").await).await;
        if last.0 != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (last.0, last.1.as_str()),
        (200, OK),
        "recovered without a restart"
    );
    assert_eq!(app.queued_jobs().len(), 2);
}

#[tokio::test]
async fn a_queue_failure_is_a_503_that_gives_the_flag_code_and_limit_hits_back() {
    let mut queue = harness::RedisServer::start();
    let app = spawn_app_with(Options {
        queue_url: Some(queue.url(0)),
        ..Options::default()
    })
    .await;
    // A code sent earlier (its 60 s flag has passed) is still valid, with two wrong guesses.
    let _: () = app
        .redis_conn()
        .set_ex(format!("sms_{MOBILE}"), "123456", 200)
        .expect("SETEX");
    let _: () = app
        .redis_conn()
        .set_ex(format!("sms_attempts_{MOBILE}"), 2, 200)
        .expect("SETEX");
    queue.stop();
    let res = send(&app, MOBILE).await;
    assert_eq!(res.headers()["retry-after"], "5");
    let (status, body) = status_and_body(res).await;
    assert_eq!((status, body.as_str()), (503, UNAVAILABLE));
    assert_eq!(
        app.value(&format!("send_flag_{MOBILE}")),
        None,
        "flag released"
    );
    assert_eq!(
        app.value(&format!("sms_{MOBILE}")).as_deref(),
        Some("123456"),
        "the unsent code is gone and the previous one is back"
    );
    let ttl = app.ttl(&format!("sms_{MOBILE}"));
    assert!((190..=200).contains(&ttl), "the life it had left: {ttl}");
    assert_eq!(
        app.value(&format!("sms_attempts_{MOBILE}")).as_deref(),
        Some("2"),
        "no fresh guesses at the restored code"
    );
    let ttl = app.ttl(&format!("sms_attempts_{MOBILE}"));
    assert!((190..=200).contains(&ttl), "{ttl}");
    assert_eq!(
        app.value(&format!("rl:sms_mobile:{MOBILE}")).as_deref(),
        Some("0")
    );
    assert_eq!(app.value("rl:sms_ip:127.0.0.1").as_deref(), Some("0"));
    assert_eq!(
        app.metric(r#"sms_sends_refused_total{reason="unavailable",service="verifications-svc"}"#)
            .await,
        1
    );

    queue.restart();
    let mut status = 0;
    for _ in 0..50 {
        status = send(&app, MOBILE).await.status().as_u16();
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, 200,
        "the user can retry at once, and the queue reconnects"
    );
    let jobs = app.queued_jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        app.value(&format!("sms_{MOBILE}")).as_deref(),
        Some(jobs[0].code.as_str())
    );
}

/// `store::release_send` on its own, for the races an HTTP test cannot time: it restores the
/// previous code only while the key holds this request's code, and never an expired one.
#[tokio::test]
async fn releasing_a_claim_restores_the_previous_code_only_over_its_own() {
    use shared::domain::{Mobile, SmsCode};
    use verifications_svc::store::{self, Claim, ClaimOutcome, SendLimits};

    let app = spawn_app().await;
    let conn = store::connect(&app.redis.url(), Duration::from_secs(2)).expect("connect");
    let mobile = Mobile::parse(MOBILE).expect("mobile");
    let limits = SendLimits {
        per_mobile_per_day: 100,
        per_ip_per_hour: 100,
        ..SendLimits::default()
    };
    let code = SmsCode::parse("654321").expect("code");
    let claim = |request_id| Claim {
        mobile: &mobile,
        ip: None,
        code: &code,
        request_id,
    };
    let seed = |value: &str, ttl: u64| {
        let _: () = app
            .redis_conn()
            .set_ex(format!("sms_{MOBILE}"), value, ttl)
            .expect("SETEX");
        let _: () = app
            .redis_conn()
            .del(format!("send_flag_{MOBILE}"))
            .expect("DEL");
    };
    let previous_of = |outcome: ClaimOutcome| match outcome {
        ClaimOutcome::Claimed { previous, .. } => previous,
        other => panic!("not claimed: {other:?}"),
    };

    // Claimed over a previous code: it comes back in the claim's reply with its TTL.
    seed("111111", 100);
    let first = claim(uuid::Uuid::new_v4());
    let previous = previous_of(
        store::claim_send(&conn, &first, limits)
            .await
            .expect("claim"),
    )
    .expect("a previous code");
    assert_eq!(previous.code, "111111");
    let ttl = previous.ttl.expect("a TTL").as_millis();
    assert!((99_000..=100_000).contains(&ttl), "{ttl}");
    assert_eq!((previous.attempts, previous.attempts_ttl), (0, None));
    assert_eq!(
        app.value(&format!("sms_{MOBILE}")).as_deref(),
        Some("654321")
    );

    // Another send replaced this request's code meanwhile: the release leaves it alone.
    let _: () = app
        .redis_conn()
        .set_ex(format!("sms_{MOBILE}"), "222222", 300)
        .expect("SETEX");
    store::release_send(&conn, &first, false, Some(&previous), Duration::ZERO)
        .await
        .expect("release");
    assert_eq!(
        app.value(&format!("sms_{MOBILE}")).as_deref(),
        Some("222222")
    );
    assert_eq!(app.value(&format!("sms_attempts_{MOBILE}")), None);

    // The previous code's life ran out before the release: deleted, not brought back to life.
    seed("333333", 1);
    let second = claim(uuid::Uuid::new_v4());
    let previous = previous_of(
        store::claim_send(&conn, &second, limits)
            .await
            .expect("claim"),
    );
    store::release_send(
        &conn,
        &second,
        false,
        previous.as_ref(),
        Duration::from_secs(2),
    )
    .await
    .expect("release");
    assert_eq!(app.value(&format!("sms_{MOBILE}")), None);

    // No previous code: the new one is deleted, as before.
    let _: () = app
        .redis_conn()
        .del(format!("send_flag_{MOBILE}"))
        .expect("DEL");
    let third = claim(uuid::Uuid::new_v4());
    let previous = previous_of(
        store::claim_send(&conn, &third, limits)
            .await
            .expect("claim"),
    );
    assert_eq!(previous, None);
    store::release_send(&conn, &third, false, None, Duration::ZERO)
        .await
        .expect("release");
    assert_eq!(app.value(&format!("sms_{MOBILE}")), None);
    assert_eq!(app.value(&format!("send_flag_{MOBILE}")), None);
}

/// A push that times out after Redis stored the job: the queue Redis is paused (`CLIENT PAUSE`,
/// real server, no stand-in) for longer than `QUEUE_TIMEOUT_MS` (300 ms), so the push script
/// waits in its socket, the client gives up, and Redis then runs it: the job is stored although
/// the service saw an error. The service's lookup of the job by its task id (the request id)
/// queues behind it on the same connection and finds it: the answer is 200, the flag and the
/// code stay, no limit hit is refunded, and a retry within 60 s is refused, so one SMS is sent.
#[tokio::test]
async fn a_push_that_times_out_after_redis_stored_the_job_is_a_success_not_a_second_sms() {
    let queue = harness::RedisServer::start();
    let app = spawn_app_with(Options {
        queue_url: Some(queue.url(0)),
        ..Options::default()
    })
    .await;
    // Warm the queue connection up, so the paused command is the push itself.
    assert_eq!(send(&app, "13900000001").await.status().as_u16(), 200);
    let mut control = redis::Client::open(queue.url(0))
        .expect("URL")
        .get_connection()
        .expect("the queue Redis accepts connections");
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(450)
        .arg("ALL")
        .query(&mut control)
        .expect("CLIENT PAUSE");
    let started = std::time::Instant::now();
    let (status, body) = status_and_body(send(&app, MOBILE).await).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the push really waited for the paused Redis: {:?}",
        started.elapsed()
    );
    assert_eq!((status, body.as_str()), (200, OK));

    let jobs: Vec<_> = app
        .queued_jobs()
        .into_iter()
        .filter(|j| j.mobile.as_str() == MOBILE)
        .collect();
    assert_eq!(jobs.len(), 1, "exactly one job for the mobile");
    let flag = app
        .value(&format!("send_flag_{MOBILE}"))
        .expect("the send flag is kept");
    assert_eq!(flag, jobs[0].request_id.to_string(), "held by this request");
    assert_eq!(
        app.value(&format!("sms_{MOBILE}")).as_deref(),
        Some(jobs[0].code.as_str()),
        "the queued code is the stored one"
    );
    assert_eq!(
        app.value(&format!("rl:sms_mobile:{MOBILE}")).as_deref(),
        Some("1"),
        "the send counts against the limit"
    );
    let (status, body) = status_and_body(send(&app, MOBILE).await).await;
    assert_eq!(
        (status, body.as_str()),
        (400, FREQUENT),
        "a retry sends no second SMS"
    );
    assert_eq!(app.queued_jobs().len(), 2, "the warm-up job and this one");
    assert_eq!(
        app.metric(r#"sms_sends_refused_total{reason="unavailable",service="verifications-svc"}"#)
            .await,
        0
    );
}

/// The job's apalis task id is its request id, so the lookup after a failed push is exact.
#[tokio::test]
async fn the_job_is_stored_under_its_request_id_as_task_id() {
    let app = spawn_app().await;
    assert_eq!(send(&app, MOBILE).await.status().as_u16(), 200);
    let jobs = app.queued_jobs();
    assert_eq!(jobs.len(), 1);
    let mut conn = redis::Client::open(app.queue.redis_url.as_str())
        .expect("URL")
        .get_connection()
        .expect("connects");
    let stored: bool = conn
        .hexists(
            app.queue.apalis_config().job_data_hash(),
            jobs[0].request_id.to_string(),
        )
        .expect("HEXISTS");
    assert!(stored, "the data hash field is the request id");
}

/// Redis (verify codes and queue on one server) restarts, data kept, between two requests of
/// one client, with no pause: both are a 200 `OK` with their job queued. The first commands
/// after the restart (the captcha script, then the queue push) would otherwise meet the
/// sockets the restart closed.
#[tokio::test]
async fn a_redis_restart_between_two_requests_costs_the_user_nothing() {
    let mut server = harness::RedisServer::start();
    let app = spawn_app_with(Options {
        redis_url: Some(server.url(0)),
        queue_url: Some(server.url(1)),
        // One HTTP worker: both requests use the same, by then closed, connections.
        env: vec![("HTTP_WORKERS", "1".to_owned())],
    })
    .await;
    let ids = [new_id(), new_id()];
    let mut conn = redis::Client::open(server.url(0))
        .expect("URL")
        .get_connection()
        .expect("connect");
    for id in &ids {
        let _: () = conn
            .set_ex(format!("img_{id}"), "ACDE", 300)
            .expect("SETEX");
    }
    let mobiles = ["13812345678", "13912345678"];
    let (status, body) = status_and_body(app.sms_code(mobiles[0], &ids[0], "ACDE").await).await;
    assert_eq!((status, body.as_str()), (200, OK));
    server.restart_keeping_data();
    let (status, body) = status_and_body(app.sms_code(mobiles[1], &ids[1], "ACDE").await).await;
    assert_eq!(
        (status, body.as_str()),
        (200, OK),
        "right after the restart"
    );
    let mut queued: Vec<String> = app
        .queued_jobs()
        .into_iter()
        .map(|j| j.mobile.as_str().to_owned())
        .collect();
    queued.sort();
    assert_eq!(queued, mobiles, "one job each, none lost, none doubled");
}
