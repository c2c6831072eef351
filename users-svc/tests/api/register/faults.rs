//! `POST /users/` while a dependency is down: exact 503s, then recovery by itself.

use super::*;

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
