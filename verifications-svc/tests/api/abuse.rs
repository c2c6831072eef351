//! The abuse limits of `GET /sms_codes/` beyond the per-mobile and per-IP ones: wrong captcha
//! answers per client, number blocks, subnets, the global budget, and the round trips of the
//! success path. Each limit trips exactly at its number, through real Redis.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use crate::helpers::{Options, TestApp, new_id, spawn_app_with, status_and_body};

const OK: &str = r#"{"message":"OK"}"#;
const WRONG: &str = r#"{"non_field_errors":["图片验证码错误"]}"#;
const THROTTLED: &str = r#"{"detail":"请求次数过于频繁，请稍后再试"}"#;
const UNAVAILABLE: &str = r#"{"detail":"服务暂时不可用，请稍后重试"}"#;

async fn app_with(env: &[(&'static str, &str)]) -> TestApp {
    spawn_app_with(Options {
        env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        ..Options::default()
    })
    .await
}

/// Seed a captcha `ACDE`, answer it with `text` for `mobile`, through a trusted proxy that says
/// the client is `client`.
async fn ask(app: &TestApp, mobile: &str, client: &str, text: &str) -> reqwest::Response {
    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    app.http
        .get(format!(
            "{}/sms_codes/{mobile}/?image_code_id={id}&text={text}",
            app.address
        ))
        .header("x-forwarded-for", client)
        .send()
        .await
        .expect("sent")
}

/// Status, `Retry-After` (0 if none) and body.
async fn answer(res: reqwest::Response) -> (u16, u64, String) {
    let retry = res
        .headers()
        .get("retry-after")
        .map_or(0, |v| v.to_str().expect("ascii").parse().expect("seconds"));
    let (status, body) = status_and_body(res).await;
    (status, retry, body)
}

async fn refused(app: &TestApp, reason: &str) -> u64 {
    app.metric(&format!(
        r#"sms_sends_refused_total{{reason="{reason}",service="verifications-svc"}}"#
    ))
    .await
}

#[tokio::test]
async fn wrong_captcha_answers_past_the_limit_refuse_even_a_right_one_with_429() {
    let app = app_with(&[("CAPTCHA_FAILURES_PER_IP_PER_HOUR", "3")]).await;
    let client = "198.51.100.7";
    for n in 1..=3 {
        let (status, body) = status_and_body(ask(&app, "13800000001", client, "ZZZZ").await).await;
        assert_eq!((status, body.as_str()), (400, WRONG), "wrong answer {n}");
    }
    assert_eq!(
        app.value("rl:captcha_fail:198.51.100.7").as_deref(),
        Some("3")
    );
    // The right answer now: refused, and the captcha is used up all the same.
    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    let res = app
        .http
        .get(format!(
            "{}/sms_codes/13800000001/?image_code_id={id}&text=acde",
            app.address
        ))
        .header("x-forwarded-for", client)
        .send()
        .await
        .expect("sent");
    let (status, retry, body) = answer(res).await;
    assert_eq!((status, body.as_str()), (429, THROTTLED));
    assert!((3_590..=3_600).contains(&retry), "{retry}");
    assert_eq!(app.value(&format!("img_{id}")), None, "captcha consumed");
    assert_eq!(app.value("send_flag_13800000001"), None);
    assert_eq!(app.value("sms_13800000001"), None);
    assert_eq!(
        app.value("rl:captcha_fail:198.51.100.7").as_deref(),
        Some("3"),
        "refusals are not counted as failures"
    );
    assert_eq!(
        app.value("rl:sms_ip:198.51.100.7"),
        None,
        "nor against the send limits"
    );
    assert!(app.queued_jobs().is_empty());
    // Another client is not affected; its right answer is not counted.
    let (status, body) =
        status_and_body(ask(&app, "13800000001", "198.51.100.8", "acde").await).await;
    assert_eq!((status, body.as_str()), (200, OK));
    assert_eq!(app.value("rl:captcha_fail:198.51.100.8"), None);
    assert_eq!(refused(&app, "captcha_limit").await, 1);
    assert_eq!(refused(&app, "image_code_wrong").await, 3);
}

#[tokio::test]
async fn the_per_prefix_limit_counts_the_first_seven_digits_across_clients() {
    let app = app_with(&[("SMS_SEND_LIMIT_PER_PREFIX_PER_HOUR", "2")]).await;
    for (mobile, client) in [
        ("13812340001", "198.51.100.1"),
        ("13812340002", "203.0.113.2"),
    ] {
        let (status, body) = status_and_body(ask(&app, mobile, client, "ACDE").await).await;
        assert_eq!((status, body.as_str()), (200, OK), "{mobile}");
    }
    let (status, retry, body) = answer(ask(&app, "13812349999", "192.0.2.3", "ACDE").await).await;
    assert_eq!((status, body.as_str()), (429, THROTTLED));
    assert!((3_590..=3_600).contains(&retry), "{retry}");
    assert_eq!(app.value("sms_13812349999"), None);
    assert_eq!(app.value("send_flag_13812349999"), None);
    assert_eq!(
        app.value("rl:sms_prefix:1381234").as_deref(),
        Some("3"),
        "refused hits of the refusing limit still count"
    );
    for untouched in [
        "rl:sms_ip:192.0.2.3",
        "rl:sms_subnet:192.0.2.0/24",
        "rl:sms_mobile:13812349999",
    ] {
        assert_eq!(
            app.value(untouched),
            None,
            "{untouched}: no other limit spent"
        );
    }
    assert_eq!(app.value("rl:sms_budget:minute").as_deref(), Some("2"));
    let (status, _) = status_and_body(ask(&app, "13812350000", "192.0.2.3", "ACDE").await).await;
    assert_eq!(status, 200, "the next block is another prefix");
    assert_eq!(app.queued_jobs().len(), 3);
    assert_eq!(refused(&app, "prefix_limit").await, 1);
    assert_eq!(
        app.metric(r#"sms_sends_by_prefix_total{prefix="138",service="verifications-svc"}"#)
            .await,
        3
    );
}

#[tokio::test]
async fn the_per_subnet_limit_groups_an_ipv4_slash_24_and_an_ipv6_slash_48() {
    let app = app_with(&[("SMS_SEND_LIMIT_PER_SUBNET_PER_HOUR", "2")]).await;
    let cases = [
        ("198.51.100.1", 200),
        ("198.51.100.2", 200),
        ("198.51.100.3", 429),
        ("198.51.101.1", 200),
        ("2001:db8:1:1::1", 200),
        ("2001:db8:1:2::1", 200),
        ("2001:db8:1:3::1", 429),
        ("2001:db8:2::1", 200),
    ];
    for (n, (client, want)) in cases.into_iter().enumerate() {
        let mobile = format!("139{:08}", n * 100_000);
        let (status, retry, body) = answer(ask(&app, &mobile, client, "ACDE").await).await;
        if want == 429 {
            assert_eq!((status, body.as_str()), (429, THROTTLED), "{client}");
            assert!((3_590..=3_600).contains(&retry), "{retry}");
            assert_eq!(app.value(&format!("rl:sms_ip:{client}")), None, "{client}");
        } else {
            assert_eq!((status, body.as_str()), (200, OK), "{client}");
        }
    }
    assert_eq!(
        app.value("rl:sms_subnet:198.51.100.0/24").as_deref(),
        Some("3")
    );
    assert_eq!(
        app.value("rl:sms_subnet:2001:db8:1::/48").as_deref(),
        Some("3")
    );
    assert_eq!(app.queued_jobs().len(), 6);
    assert_eq!(refused(&app, "subnet_limit").await, 2);
}

#[tokio::test]
async fn a_spent_global_budget_answers_503_with_the_windows_retry_after_and_counts_nowhere() {
    for (var, window, secs) in [
        ("SMS_BUDGET_PER_MINUTE", "minute", 60),
        ("SMS_BUDGET_PER_HOUR", "hour", 3600),
        ("SMS_BUDGET_PER_DAY", "day", 86_400),
    ] {
        let app = app_with(&[(var, "2")]).await;
        for (mobile, client) in [
            ("13800000001", "198.51.100.1"),
            ("13900000002", "203.0.113.2"),
        ] {
            let (status, body) = status_and_body(ask(&app, mobile, client, "ACDE").await).await;
            assert_eq!((status, body.as_str()), (200, OK), "{window} {mobile}");
        }
        let (status, retry, body) =
            answer(ask(&app, "15000000003", "192.0.2.3", "ACDE").await).await;
        assert_eq!((status, body.as_str()), (503, UNAVAILABLE), "{window}");
        assert!((secs - 10..=secs).contains(&retry), "{window}: {retry}");
        assert_eq!(app.value("sms_15000000003"), None);
        assert_eq!(app.value("send_flag_15000000003"), None);
        assert_eq!(
            app.value(&format!("rl:sms_budget:{window}")).as_deref(),
            Some("2"),
            "the budget counts sends, not refusals"
        );
        for untouched in [
            "rl:sms_ip:192.0.2.3",
            "rl:sms_mobile:15000000003",
            "rl:sms_prefix:1500000",
            "rl:sms_subnet:192.0.2.0/24",
        ] {
            assert_eq!(app.value(untouched), None, "{window} {untouched}");
        }
        assert_eq!(app.queued_jobs().len(), 2);
        assert_eq!(refused(&app, "budget_spent").await, 1);
        let gauge =
            |name: &str| format!(r#"{name}{{window="{window}",service="verifications-svc"}}"#);
        assert_eq!(app.metric(&gauge("sms_budget_used")).await, 2);
        assert_eq!(app.metric(&gauge("sms_budget_limit")).await, 2);
    }
}

#[tokio::test]
async fn a_client_limit_refusal_wins_over_a_spent_budget_and_spends_no_budget() {
    let app = app_with(&[
        ("SMS_BUDGET_PER_MINUTE", "1"),
        ("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "1"),
    ])
    .await;
    let (status, _) = status_and_body(ask(&app, "13800000001", "198.51.100.1", "ACDE").await).await;
    assert_eq!(status, 200);
    let (status, retry, body) =
        answer(ask(&app, "13800000002", "198.51.100.1", "ACDE").await).await;
    assert_eq!((status, body.as_str()), (429, THROTTLED));
    assert!((3_590..=3_600).contains(&retry), "{retry}");
    assert_eq!(app.value("rl:sms_ip:198.51.100.1").as_deref(), Some("2"));
    assert_eq!(app.value("rl:sms_budget:minute").as_deref(), Some("1"));
    assert_eq!(app.value("rl:sms_prefix:1380000").as_deref(), Some("1"));
}

/// Every top-level command the server receives (MONITOR; commands a script runs are marked
/// `lua` and are not round trips) while `during` runs.
async fn commands_during<F: Future<Output = ()>>(port: u16, during: F) -> Vec<String> {
    let mut monitor = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    monitor
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    monitor.write_all(b"MONITOR\r\n").expect("MONITOR");
    let mut lines = BufReader::new(monitor.try_clone().expect("clone"));
    let mut ok = String::new();
    lines.read_line(&mut ok).expect("+OK");
    assert_eq!(ok.trim(), "+OK");
    during.await;
    let marker = new_id();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).expect("url");
    let _: String = redis::cmd("ECHO")
        .arg(&marker)
        .query(&mut client.get_connection().expect("conn"))
        .expect("ECHO");
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        lines.read_line(&mut line).expect("a MONITOR line");
        if line.contains(&marker) {
            return seen;
        }
        if !line.contains(" lua]") {
            seen.push(line.trim().to_owned());
        }
    }
}

#[tokio::test]
async fn the_success_path_takes_two_redis_round_trips() {
    let server = harness::RedisServer::start();
    let app = spawn_app_with(Options {
        redis_url: Some(server.url(1)),
        queue_url: Some(server.url(2)),
        ..Options::default()
    })
    .await;
    let seed = |id: &str| {
        let mut conn = redis::Client::open(server.url(1))
            .expect("url")
            .get_connection()
            .expect("conn");
        let _: () = redis::cmd("SETEX")
            .arg(format!("img_{id}"))
            .arg(300)
            .arg("ACDE")
            .query(&mut conn)
            .expect("SETEX");
    };
    // Warm up: connections opened and scripts loaded on both HTTP workers.
    for n in 0..8 {
        let id = new_id();
        seed(&id);
        let res = app.sms_code(&format!("1370000000{n}"), &id, "ACDE").await;
        assert_eq!(res.status(), 200);
    }
    let id = new_id();
    seed(&id);
    let commands = commands_during(server.port, async {
        let (status, body) = status_and_body(app.sms_code("13712345678", &id, "ACDE").await).await;
        assert_eq!((status, body.as_str()), (200, OK));
    })
    .await;
    assert_eq!(commands.len(), 2, "{commands:#?}");
    assert!(
        commands.iter().all(|c| c.contains("\"EVALSHA\"")),
        "{commands:#?}"
    );
}

/// The captcha path takes one round trip (count + store), and a client the issuance limit has
/// refused once is refused by this process until its window ends without Redis and without a
/// render: a flood of refused requests costs neither.
#[tokio::test]
async fn captcha_issuance_past_the_per_minute_limit_answers_429_and_then_costs_no_round_trip() {
    let server = harness::RedisServer::start();
    let app = spawn_app_with(Options {
        redis_url: Some(server.url(1)),
        queue_url: Some(server.url(2)),
        env: vec![("CAPTCHA_ISSUE_LIMIT_PER_IP_PER_MINUTE", "3".to_owned())],
    })
    .await;
    let value = |key: &str| -> Option<String> {
        let mut conn = redis::Client::open(server.url(1))
            .expect("url")
            .get_connection()
            .expect("conn");
        redis::cmd("GET").arg(key).query(&mut conn).expect("GET")
    };
    let from = |client: String| {
        app.http
            .get(format!("{}/image_codes/{}/", app.address, new_id()))
            .header("x-forwarded-for", client)
            .send()
    };
    // Warm up: connections opened and the script loaded on both HTTP workers.
    for n in 1..=8 {
        let res = from(format!("198.51.100.{n}")).await.expect("sent");
        assert_eq!(res.status(), 200);
    }
    assert_eq!(app.image_code(&new_id()).await.status(), 200, "captcha 1");
    let commands = commands_during(server.port, async {
        assert_eq!(app.image_code(&new_id()).await.status(), 200, "captcha 2");
    })
    .await;
    assert_eq!(commands.len(), 1, "one round trip: {commands:#?}");
    assert!(commands[0].contains("\"EVALSHA\""), "{commands:#?}");
    assert_eq!(app.image_code(&new_id()).await.status(), 200, "captcha 3");

    let id = new_id();
    let (status, retry, body) = answer(app.image_code(&id).await).await;
    assert_eq!((status, body.as_str()), (429, THROTTLED));
    assert!((50..=60).contains(&retry), "{retry}");
    assert_eq!(value(&format!("img_{id}")), None, "nothing stored");
    assert_eq!(
        value("rl:captcha_issue:127.0.0.1").as_deref(),
        Some("4"),
        "the refused hit counted too"
    );
    let again = new_id();
    let commands = commands_during(server.port, async {
        let (status, retry_again, body) = answer(app.image_code(&again).await).await;
        assert_eq!((status, body.as_str()), (429, THROTTLED));
        assert!(
            (1..=retry).contains(&retry_again),
            "{retry_again} vs {retry}"
        );
    })
    .await;
    assert_eq!(commands, Vec::<String>::new(), "refused from memory");
    assert_eq!(value(&format!("img_{again}")), None, "nothing stored");

    let res = from("198.51.100.99".to_owned()).await.expect("sent");
    assert_eq!(res.status(), 200, "another client has its own budget");
    assert_eq!(
        app.metric(r#"captchas_refused_total{reason="issue_limit",service="verifications-svc"}"#)
            .await,
        2
    );
    assert_eq!(
        app.metric(r#"codes_issued_total{kind="image",service="verifications-svc"}"#)
            .await,
        12
    );
}
