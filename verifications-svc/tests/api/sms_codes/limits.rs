//! `GET /sms_codes/`: the resend guard, concurrency, and the per-mobile and per-IP limits (client addresses through trusted and untrusted proxies, IPv6 by /64).

use super::*;

/// The status of a send through a proxy that says the client is `xff`.
async fn status_from(app: &TestApp, mobile: &str, xff: &str) -> u16 {
    send_from(app, mobile, xff).await.status().as_u16()
}

/// How many of `results` are `status` with exactly `body`.
fn count(results: &[(u16, String)], status: u16, body: &str) -> usize {
    results
        .iter()
        .filter(|(s, b)| (*s, b.as_str()) == (status, body))
        .count()
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
    let ok = count(&results, 200, OK);
    let frequent = count(&results, 400, FREQUENT);
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
    let ok = count(&results, 200, OK);
    let invalid = count(&results, 400, INVALID);
    assert_eq!((ok, invalid), (1, 9), "{results:?}");
    assert_eq!(app.queued_jobs().len(), 1);
}

#[tokio::test]
async fn the_per_mobile_daily_limit_answers_429_with_retry_after() {
    let app = spawn_app_with(Options::env(&[("SMS_SEND_LIMIT_PER_MOBILE_PER_DAY", "2")])).await;
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
    let retry = harness::service::retry_after(&res);
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
    let app = spawn_app_with(Options::env(&[("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "2")])).await;
    assert_eq!(send(&app, "13800000001").await.status(), 200);
    assert_eq!(send(&app, "13800000002").await.status(), 200);
    let res = send(&app, "13800000003").await;
    let retry = harness::service::retry_after(&res);
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
    let app = spawn_app_with(Options::env(&[("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "1")])).await;
    assert_eq!(status_from(&app, "13800000001", "198.51.100.1").await, 200);
    assert_eq!(status_from(&app, "13800000002", "198.51.100.2").await, 200);
    assert_eq!(
        status_from(&app, "13800000003", "6.6.6.6, 198.51.100.1").await,
        429,
        "the rightmost untrusted hop is the client"
    );
    assert_eq!(app.value("rl:sms_ip:198.51.100.1").as_deref(), Some("2"));
    assert_eq!(app.value("rl:sms_ip:198.51.100.2").as_deref(), Some("1"));
    assert_eq!(app.value("rl:sms_ip:127.0.0.1"), None);
}

#[tokio::test]
async fn ipv6_clients_are_limited_by_their_slash_64_and_mapped_ipv4_as_ipv4() {
    let app = spawn_app_with(Options::env(&[("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "1")])).await;
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
        assert_eq!(status_from(&app, mobile, xff).await, want, "{why}");
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
    let app = spawn_app_with(Options::env(&[
        ("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "1"),
        ("TRUSTED_PROXIES", "10.0.0.0/8"),
    ]))
    .await;
    assert_eq!(status_from(&app, "13800000001", "198.51.100.1").await, 200);
    assert_eq!(
        status_from(&app, "13800000002", "198.51.100.2").await,
        429,
        "a forged header does not buy a fresh limit"
    );
    assert_eq!(app.value("rl:sms_ip:127.0.0.1").as_deref(), Some("2"));
    assert_eq!(app.value("rl:sms_ip:198.51.100.1"), None);
}
