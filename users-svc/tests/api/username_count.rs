//! `GET /usernames/{username}/count/`, and the per-IP limit both count endpoints share.

use serde_json::json;

use crate::helpers::{Options, spawn_app, spawn_app_with, status_and_json};

fn path(username: &str) -> String {
    // Percent-encode everything that is not ASCII alphanumeric, as a browser would.
    let encoded: String = username
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/usernames/{encoded}/count/")
}

#[tokio::test]
async fn a_free_username_counts_0_and_a_taken_one_1_case_insensitively() {
    let app = spawn_app().await;
    let (status, body) = status_and_json(app.get(&path("Tom12abc")).await).await;
    assert_eq!(
        (status, body),
        (200, json!({"username": "Tom12abc", "count": 0}))
    );

    app.insert_user("Tom12abc", "13800138000");
    for asked in ["Tom12abc", "tom12ABC", "TOM12ABC"] {
        let (status, body) = status_and_json(app.get(&path(asked)).await).await;
        assert_eq!(
            (status, body),
            (200, json!({"username": asked, "count": 1})),
            "{asked}"
        );
    }
}

#[tokio::test]
async fn unicode_names_work_and_distinct_4_byte_names_do_not_collide() {
    let app = spawn_app().await;
    // U+20000 and U+20001 are CJK Extension B letters (4 bytes in UTF-8, `\w`).
    app.insert_user("𠀀𠀀𠀀𠀀𠀀", "13800138000");
    let cases = [
        ("the same rare-CJK name", "𠀀𠀀𠀀𠀀𠀀", 1),
        ("another rare-CJK name", "𠀁𠀁𠀁𠀁𠀁", 0),
        ("common CJK", "张三李四王五", 0),
        ("mixed", "用户_abc1", 0),
    ];
    for (why, name, count) in cases {
        let (status, body) = status_and_json(app.get(&path(name)).await).await;
        assert_eq!(
            (status, body),
            (200, json!({"username": name, "count": count})),
            "{why}"
        );
    }
}

#[tokio::test]
async fn names_outside_the_pattern_are_404_json() {
    let app = spawn_app().await;
    let cases = [
        ("four characters", "abcd"),
        ("twenty-one characters", "abcdefghijklmnopqrstu"),
        ("a dash", "ab-cde"),
        ("a space", "ab cde"),
        ("a dot", "ab.cde"),
        ("emoji are not word characters", "😀😀😀😀😀"),
        ("a NUL byte", "abc\0de"),
    ];
    for (why, name) in cases {
        let (status, body) = status_and_json(app.get(&path(name)).await).await;
        assert_eq!(
            (status, body),
            (404, json!({"detail": "Not found."})),
            "{why}"
        );
    }
    // Not rate limited: a 404 never reaches the limiter.
    assert_eq!(app.redis_get("rl:count_ip:127.0.0.1"), None);
}

#[tokio::test]
async fn the_per_ip_limit_answers_429_with_retry_after_and_is_shared_with_mobiles() {
    let app = spawn_app_with(Options::env(&[("COUNT_LIMIT_PER_IP_PER_MINUTE", "3")])).await;
    for p in [
        path("alice123"),
        "/mobiles/13800138000/count/".to_owned(),
        path("bob12345"),
    ] {
        assert_eq!(app.get(&p).await.status(), 200, "{p}");
    }
    let res = app.get(&path("carol123")).await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    let (status, body) = status_and_json(res).await;
    assert_eq!(
        (status, body),
        (429, json!({"detail": "请求次数过于频繁，请稍后再试"}))
    );
    assert_eq!(app.redis_get("rl:count_ip:127.0.0.1").as_deref(), Some("4"));
    let ttl = app.redis_ttl("rl:count_ip:127.0.0.1");
    assert!((1..=60).contains(&ttl), "{ttl}");

    // Behind the trusted local proxy, the forwarded client has a budget of its own.
    let res = app
        .http
        .get(format!("{}{}", app.address, path("carol123")))
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.redis_get("rl:count_ip:203.0.113.7").as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn redis_down_answers_503_with_retry_after_and_the_limiter_recovers_by_itself() {
    let mut server = harness::RedisServer::start();
    let app = crate::helpers::spawn_app_with_redis(server.url(0)).await;
    assert_eq!(
        app.get(&path("alice123")).await.status(),
        200,
        "connected before the outage"
    );
    server.stop();
    for _ in 0..2 {
        let res = app.get(&path("alice123")).await;
        assert_eq!(res.headers()["retry-after"], "5");
        let (status, body) = status_and_json(res).await;
        assert_eq!(
            (status, body),
            (503, json!({"detail": "服务暂时不可用，请稍后重试"}))
        );
    }
    server.restart();
    // The shared limiter connection reconnects on its own (within a few attempts).
    let mut status = 0;
    for _ in 0..50 {
        status = app.get(&path("alice123")).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test]
async fn other_methods_are_405() {
    let app = spawn_app().await;
    let res = app
        .http
        .post(format!("{}{}", app.address, path("alice123")))
        .send()
        .await
        .expect("sent");
    let (status, body) = status_and_json(res).await;
    assert_eq!(
        (status, body),
        (405, json!({"detail": "方法 “POST” 不被允许。"}))
    );
}

#[tokio::test]
async fn the_limit_counts_an_ipv6_client_by_its_64_and_a_mapped_ipv4_as_the_ipv4() {
    let app = spawn_app_with(Options::env(&[("COUNT_LIMIT_PER_IP_PER_MINUTE", "3")])).await;
    // The test's peer is 127.0.0.1, the default trusted proxy, so X-Forwarded-For names the
    // client.
    let from = |client: &'static str| {
        let url = format!("{}{}", app.address, path("alice123"));
        let http = app.http.clone();
        async move {
            http.get(url)
                .header("x-forwarded-for", client)
                .send()
                .await
                .expect("sent")
                .status()
                .as_u16()
        }
    };
    let cases = [
        ("first host of the /64", "2001:db8:1:2::1", 200),
        (
            "another host, same /64",
            "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
            200,
        ),
        ("a third host, same /64", "2001:db8:1:2::ffff", 200),
        ("the fourth from that /64 is over", "2001:db8:1:2::7", 429),
        (
            "the neighbouring /64 has its own budget",
            "2001:db8:1:3::1",
            200,
        ),
        ("an IPv4 client", "203.0.113.7", 200),
        ("the same IPv4, mapped", "::ffff:203.0.113.7", 200),
        ("the same IPv4 again", "203.0.113.7", 200),
        ("its fourth, mapped, is over", "::ffff:203.0.113.7", 429),
    ];
    for (why, client, want) in cases {
        assert_eq!(from(client).await, want, "{why}: {client}");
    }
    for (key, want) in [
        ("rl:count_ip:2001:db8:1:2::/64", "4"),
        ("rl:count_ip:2001:db8:1:3::/64", "1"),
        ("rl:count_ip:203.0.113.7", "4"),
    ] {
        assert_eq!(app.redis_get(key).as_deref(), Some(want), "{key}");
    }
    // No per-address keys: only the three above exist.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("rl:*")
        .query(&mut app.redis_conn())
        .expect("KEYS");
    assert_eq!(keys.len(), 3, "{keys:?}");
}

/// After a restart Redis takes connections at once but refuses every data command with
/// `-LOADING` until its data is read back; a request arriving then waits for it (within
/// `REDIS_TIMEOUT_MS`) instead of answering 503.
#[tokio::test]
async fn a_request_right_after_a_redis_restart_waits_while_redis_loads_its_data() {
    let mut server = harness::RedisServer::start();
    let app = spawn_app_with(Options {
        redis_url: Some(server.url(0)),
        ..Options::env(&[("REDIS_TIMEOUT_MS", "10000")])
    })
    .await;
    assert_eq!(app.get(&path("alice123")).await.status(), 200);
    let mut raw = redis::Client::open(server.url(0))
        .expect("url")
        .get_connection()
        .expect("connect");
    // Enough data that reading it back takes a while (about 100 MB, well under maxmemory).
    redis::cmd("EVAL")
        .arg("for i = 1, 1500000 do redis.call('SET', 'filler:' .. i, 'x') end")
        .arg(0)
        .query::<()>(&mut raw)
        .expect("filled");
    server.restart_keeping_data();
    let mut raw = redis::Client::open(server.url(0))
        .expect("url")
        .get_connection()
        .expect("the new process takes connections at once");
    let loading = redis::cmd("GET")
        .arg("filler:1")
        .query::<Option<String>>(&mut raw);
    assert!(
        loading
            .as_ref()
            .is_err_and(|e| e.to_string().contains("loading the dataset")),
        "the restarted Redis is still loading: {loading:?}"
    );
    // A new HTTP connection: the first one idled past actix's keep-alive while Redis filled up.
    let res = harness::http_client()
        .get(format!("{}{}", app.address, path("alice123")))
        .send()
        .await
        .expect("sent");
    let (status, body) = status_and_json(res).await;
    assert_eq!(
        (status, body),
        (200, json!({"username": "alice123", "count": 0}))
    );
}

/// A Redis restart or a dropped link can close the connection while a count's limiter hit is
/// on it, unanswered. The hit is sent again on a fresh connection (a repeat at worst counts one
/// lookup twice), so the user gets the answer, not a 503. Redis holds the hit unexecuted
/// (`CLIENT PAUSE WRITE`) while the test closes the connection under it, as a restart does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_whose_redis_connection_drops_under_its_limiter_hit_is_still_answered() {
    let server = harness::RedisServer::start();
    let app = crate::helpers::spawn_app_with_redis(server.url(0)).await;
    assert_eq!(app.get(&path("alice123")).await.status(), 200, "connected");
    let mut held = server.hold_writes();
    let count = tokio::spawn(
        harness::http_client()
            .get(format!("{}{}", app.address, path("alice123")))
            .send(),
    );
    held.drop_a_waiting_write_and_wait_for_its_resend()
        .expect("the hit is sent again on a fresh connection");
    held.release();
    let res = count.await.expect("joined").expect("answered");
    let (status, body) = status_and_json(res).await;
    assert_eq!(
        (status, body),
        (200, json!({"username": "alice123", "count": 0}))
    );
    // Counted once (the warm-up, then this count): the copy on the dropped connection never ran.
    let counter: Option<String> = redis::cmd("GET")
        .arg("rl:count_ip:127.0.0.1")
        .query(
            &mut redis::Client::open(server.url(0))
                .expect("url")
                .get_connection()
                .expect("connect"),
        )
        .expect("GET");
    assert_eq!(counter.as_deref(), Some("2"));
}
