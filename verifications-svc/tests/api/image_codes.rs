//! `GET /image_codes/{image_code_id}/`.

use redis::Commands;
use verifications_svc::domain::captcha::{ALPHABET, HEIGHT, WIDTH};

use crate::helpers::{new_id, spawn_app, spawn_app_with_redis, status_and_body};

const INVALID_ID: &str = r#"{"image_code_id":["Must be a valid UUID."]}"#;

#[tokio::test]
async fn a_captcha_is_a_png_whose_text_is_stored_for_300_seconds() {
    let app = spawn_app().await;
    let id = new_id();
    let res = app.image_code(&id).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let png = res.bytes().await.expect("body");
    let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .expect("the body is a PNG");
    assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT));

    let key = format!("img_{id}");
    let text = app.value(&key).expect("img_{id} is stored");
    assert_eq!(text.len(), 4, "{text}");
    assert!(text.bytes().all(|b| ALPHABET.contains(&b)), "{text}");
    let ttl = app.ttl(&key);
    assert!((295..=300).contains(&ttl), "TTL {ttl}");
    let mut keys: Vec<String> = app.redis_conn().keys("*").expect("KEYS");
    keys.sort();
    assert_eq!(
        keys,
        vec![key, "rl:captcha_issue:127.0.0.1".to_owned()],
        "nothing else is written but the issuance counter"
    );
    assert_eq!(
        app.metric(r#"codes_issued_total{kind="image",service="verifications-svc"}"#)
            .await,
        1
    );
}

#[tokio::test]
async fn a_repeated_id_replaces_the_old_text_and_restarts_its_ttl() {
    let app = spawn_app().await;
    let id = new_id();
    let _: () = app
        .redis_conn()
        .set_ex(format!("img_{id}"), "old!", 10)
        .expect("SETEX");
    assert_eq!(app.image_code(&id).await.status(), 200);
    let text = app.value(&format!("img_{id}")).expect("stored");
    assert_ne!(text, "old!");
    assert!(app.ttl(&format!("img_{id}")) > 290);
}

#[tokio::test]
async fn ids_in_any_uuid_spelling_are_stored_under_the_canonical_key() {
    let app = spawn_app().await;
    let id = new_id();
    for spelling in [
        id.to_uppercase(),
        id.replace('-', ""),
        format!("%7B{id}%7D"),
        format!("urn:uuid:{id}"),
    ] {
        let _: () = app.redis_conn().del(format!("img_{id}")).expect("DEL");
        let res = app.image_code(&spelling).await;
        assert_eq!(res.status(), 200, "{spelling}");
        assert!(app.value(&format!("img_{id}")).is_some(), "{spelling}");
    }
}

#[tokio::test]
async fn bad_ids_are_a_400_field_error_and_store_nothing() {
    let app = spawn_app().await;
    let long = "a".repeat(10_000);
    let cases = [
        ("not a uuid", "abc"),
        ("one digit short", "6a5f1e7c-0b4d-4e8e-9a1b-2c3d4e5f6a7"),
        ("one digit long", "6a5f1e7c-0b4d-4e8e-9a1b-2c3d4e5f6a7bb"),
        ("non-hex letter", "6a5f1e7c-0b4d-4e8e-9a1b-2c3d4e5f6a7g"),
        ("10 KB", long.as_str()),
        ("NUL byte", "%00"),
        ("uuid and a NUL", "6a5f1e7c-0b4d-4e8e-9a1b-2c3d4e5f6a7b%00"),
        ("unicode", "%E5%9B%BE%E7%89%87"),
        ("full-width digits", "%EF%BC%91%EF%BC%92%EF%BC%93"),
        ("invalid utf-8", "%FF%FE"),
        ("spaces", "%20%20"),
        ("sql", "1'%20OR%20'1'='1"),
        ("dots", "a..b"),
    ];
    for (why, id) in cases {
        let (status, body) = status_and_body(app.image_code(id).await).await;
        assert_eq!((status, body.as_str()), (400, INVALID_ID), "{why}");
    }
    assert_eq!(
        app.redis_conn().keys::<_, Vec<String>>("*").expect("KEYS"),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn other_paths_and_methods_answer_drf_json_never_5xx() {
    let app = spawn_app().await;
    let id = new_id();
    let not_found = r#"{"detail":"Not found."}"#;
    let cases = [
        (
            "no trailing slash",
            "GET",
            format!("/image_codes/{id}"),
            404,
            not_found.to_owned(),
        ),
        (
            "empty id",
            "GET",
            "/image_codes//".to_owned(),
            404,
            not_found.to_owned(),
        ),
        (
            "extra segment",
            "GET",
            format!("/image_codes/{id}/x/"),
            404,
            not_found.to_owned(),
        ),
        (
            "no id",
            "GET",
            "/image_codes/".to_owned(),
            404,
            not_found.to_owned(),
        ),
        (
            "POST",
            "POST",
            format!("/image_codes/{id}/"),
            405,
            r#"{"detail":"方法 “POST” 不被允许。"}"#.to_owned(),
        ),
        (
            "PUT",
            "PUT",
            format!("/image_codes/{id}/"),
            405,
            r#"{"detail":"方法 “PUT” 不被允许。"}"#.to_owned(),
        ),
        (
            "DELETE",
            "DELETE",
            format!("/image_codes/{id}/"),
            405,
            r#"{"detail":"方法 “DELETE” 不被允许。"}"#.to_owned(),
        ),
        (
            "PATCH",
            "PATCH",
            format!("/image_codes/{id}/"),
            405,
            r#"{"detail":"方法 “PATCH” 不被允许。"}"#.to_owned(),
        ),
        (
            "OPTIONS",
            "OPTIONS",
            format!("/image_codes/{id}/"),
            405,
            r#"{"detail":"方法 “OPTIONS” 不被允许。"}"#.to_owned(),
        ),
        (
            "bad id with POST",
            "POST",
            "/image_codes/abc/".to_owned(),
            405,
            r#"{"detail":"方法 “POST” 不被允许。"}"#.to_owned(),
        ),
    ];
    for (why, method, path, status, body) in cases {
        let res = app
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", app.address),
            )
            .body("x".repeat(100))
            .send()
            .await
            .expect("sent");
        assert_eq!(res.headers()["content-type"], "application/json", "{why}");
        let (s, b) = status_and_body(res).await;
        assert_eq!((s, b.as_str()), (status, body.as_str()), "{why}");
    }
    assert_eq!(
        app.redis_conn().keys::<_, Vec<String>>("*").expect("KEYS"),
        Vec::<String>::new()
    );

    // A 10 KB query string is ignored: the captcha is still served.
    let res = app
        .get(&format!(
            "/image_codes/{id}/?junk={}",
            "%00%FF".repeat(1_700)
        ))
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn redis_down_is_a_503_with_retry_after_and_redis_back_is_a_200_again() {
    let mut server = harness::RedisServer::start();
    let app = spawn_app_with_redis(server.url(0)).await;
    assert_eq!(app.image_code(&new_id()).await.status(), 200);

    server.stop();
    let res = app.image_code(&new_id()).await;
    assert_eq!(res.headers()["retry-after"], "5");
    let (status, body) = status_and_body(res).await;
    assert_eq!(
        (status, body.as_str()),
        (503, r#"{"detail":"服务暂时不可用，请稍后重试"}"#)
    );

    server.restart();
    let id = new_id();
    let mut status = 0;
    for _ in 0..50 {
        status = app.image_code(&id).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "recovered without a restart");
    let mut conn = redis::Client::open(server.url(0))
        .expect("URL")
        .get_connection()
        .expect("connect");
    let stored: Option<String> = conn.get(format!("img_{id}")).expect("GET");
    assert!(stored.is_some());
}

/// `CAPTCHA_RENDER_WAIT_MS=1` under 64 concurrent requests: a worker draws one picture at a
/// time, so some requests are served and the ones that found more than 1 ms of renders queued
/// ahead on their worker get exactly the 503 JSON with `Retry-After`; every 200's id has its
/// `img_` key, no refused one has. With one HTTP worker too, where only the queue in front of
/// that worker's own drawing can refuse (with several, another worker's renders never delay
/// this one's).
#[tokio::test]
async fn a_flood_beyond_the_render_wait_gets_503_with_retry_after_and_stores_nothing() {
    flood_beyond_the_render_wait(None).await;
}

#[tokio::test]
async fn a_flood_beyond_the_render_wait_of_one_worker_gets_503_too() {
    flood_beyond_the_render_wait(Some(1)).await;
}

async fn flood_beyond_the_render_wait(workers: Option<usize>) {
    let mut env = vec![
        ("CAPTCHA_RENDER_WAIT_MS", "1".to_owned()),
        ("CAPTCHA_ISSUE_LIMIT_PER_IP_PER_MINUTE", "1000".to_owned()),
    ];
    env.extend(workers.map(|n| ("HTTP_WORKERS", n.to_string())));
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        env,
        ..Default::default()
    })
    .await;
    let ids: Vec<String> = (0..64).map(|_| new_id()).collect();
    let answers = futures::future::join_all(ids.iter().map(|id| async {
        let res = app.image_code(id).await;
        let retry_after = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().expect("ASCII").to_owned());
        let content_type = res.headers()["content-type"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        let (status, body) = (res.status().as_u16(), res.bytes().await.expect("body"));
        (id.clone(), status, retry_after, content_type, body)
    }))
    .await;
    let (mut served, mut refused) = (0, 0);
    for (id, status, retry_after, content_type, body) in answers {
        let stored = app.value(&format!("img_{id}"));
        match status {
            200 => {
                served += 1;
                assert_eq!(content_type, "image/png");
                assert!(body.starts_with(b"\x89PNG"));
                assert!(stored.is_some(), "a served captcha has its key");
            }
            503 => {
                refused += 1;
                assert_eq!(retry_after.as_deref(), Some("5"));
                assert_eq!(content_type, "application/json");
                assert_eq!(
                    &body[..],
                    r#"{"detail":"服务暂时不可用，请稍后重试"}"#.as_bytes()
                );
                assert_eq!(stored, None, "a refused request stores nothing");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(served > 0, "some requests are served");
    assert!(refused > 0, "with a 1 ms wait, a flood is refused in part");
    let keys: Vec<String> = app.redis_conn().keys("img_*").expect("KEYS");
    assert_eq!(keys.len(), served);
}

/// Redis restarts (data kept) between two requests of one client, with no pause: the second
/// request is served as if nothing happened (the worker's connection, closed by the restart,
/// is replaced before the command goes out, instead of its error reaching the user).
#[tokio::test]
async fn a_redis_restart_between_two_requests_costs_the_user_nothing() {
    let mut server = harness::RedisServer::start();
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        redis_url: Some(server.url(0)),
        // One HTTP worker: both requests use the same, by then closed, connection.
        env: vec![("HTTP_WORKERS", "1".to_owned())],
        ..Default::default()
    })
    .await;
    let client = redis::Client::open(server.url(0)).expect("URL");
    for restart in [false, true] {
        if restart {
            server.restart_keeping_data();
        }
        let id = new_id();
        let res = app.image_code(&id).await;
        assert_eq!(res.status(), 200, "restarted before: {restart}");
        assert_eq!(res.headers()["content-type"], "image/png");
        let png = res.bytes().await.expect("body");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "restarted before: {restart}"
        );
        let stored: Option<String> = client
            .get_connection()
            .expect("connect")
            .get(format!("img_{id}"))
            .expect("GET");
        assert_eq!(stored.map(|t| t.len()), Some(4), "the text was stored");
    }
}

/// A Redis restart or a dropped link can close the connection while the captcha's script (the
/// issuance count and the `SETEX`) is on it, unanswered. It is sent again on a fresh
/// connection (the `SETEX` is idempotent, the count at worst counts twice), so the user gets
/// the picture, not a 503. Redis holds the script unexecuted (`CLIENT PAUSE WRITE`) while the
/// test closes the connection under it, as a restart does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captcha_whose_redis_connection_drops_under_its_script_is_still_served() {
    let server = harness::RedisServer::start();
    let app = spawn_app_with_redis(server.url(0)).await;
    assert_eq!(app.image_code(&new_id()).await.status(), 200, "connected");
    let mut held = server.hold_writes();
    let id = new_id();
    let captcha = tokio::spawn(
        harness::http_client()
            .get(format!("{}/image_codes/{id}/", app.address))
            .send(),
    );
    held.drop_a_waiting_write_and_wait_for_its_resend()
        .expect("the script is sent again on a fresh connection");
    held.release();
    let res = captcha.await.expect("joined").expect("answered");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    let png = res.bytes().await.expect("body");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let mut redis = redis::Client::open(server.url(0))
        .expect("URL")
        .get_connection()
        .expect("connect");
    let stored: Option<String> = redis.get(format!("img_{id}")).expect("GET");
    assert_eq!(stored.map(|t| t.len()), Some(4), "the text was stored");
    // Counted once (the warm-up, then this one): the copy on the dropped connection never ran.
    let issued: Option<String> = redis.get("rl:captcha_issue:127.0.0.1").expect("GET");
    assert_eq!(issued.as_deref(), Some("2"));
}
