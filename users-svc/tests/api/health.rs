//! `/healthz`, `/readyz`, unknown routes and wrong methods.

use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_answers_200_json() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("body"), r#"{"status":"ok"}"#);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_drf_json() {
    let app = spawn_app().await;
    let res = app.get("/nope/").await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.text().await.expect("body"),
        r#"{"detail":"Not found."}"#
    );
    let res = app
        .http
        .post(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 405);
    assert_eq!(
        res.text().await.expect("body"),
        r#"{"detail":"方法 “POST” 不被允许。"}"#
    );
}

#[tokio::test]
async fn readyz_answers_200_when_redis_answers() {
    let app = spawn_app().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    // The service reached this test's own database, not the server's default one.
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut app.redis.client().get_connection().expect("connect"))
        .expect("CLIENT LIST");
    assert!(
        clients.contains(&format!(" db={} ", app.redis.db)),
        "{clients}"
    );
    assert_eq!(res.text().await.expect("body"), r#"{"status":"ready"}"#);
}

#[tokio::test]
async fn readyz_answers_503_with_retry_after_when_redis_is_down() {
    let mut server = harness::RedisServer::start();
    let app = crate::helpers::spawn_app_with_redis(server.url(0)).await;
    server.stop();
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["status"], "unavailable");
    assert!(body["failed"]["redis"].is_string(), "{body}");
}
