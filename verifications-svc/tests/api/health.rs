use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_unknown_routes_and_wrong_methods_answer_json() {
    let app = spawn_app().await;
    harness::service::assert_health_and_framework_errors(&app.http, &app.address).await;
}

#[tokio::test]
async fn readyz_answers_200_when_redis_answers() {
    let app = spawn_app().await;
    harness::service::assert_ready(app.get("/readyz").await, &app.redis).await;
}

#[tokio::test]
async fn readyz_answers_503_with_retry_after_when_redis_is_down() {
    let mut server = harness::RedisServer::start();
    let app = crate::helpers::spawn_app_with_redis(server.url(0)).await;
    server.stop();
    harness::service::assert_unready(app.get("/readyz").await, &["redis"]).await;
}

#[tokio::test]
async fn readyz_names_the_queue_when_only_the_queue_redis_is_down() {
    let mut queue = harness::RedisServer::start();
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        queue_url: Some(queue.url(0)),
        ..crate::helpers::Options::default()
    })
    .await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    queue.stop();
    // Exactly the queue is named: the verify-codes Redis is still up.
    harness::service::assert_unready(app.get("/readyz").await, &["queue"]).await;
}

#[tokio::test]
async fn allowed_origins_get_cors_headers_and_preflights_are_answered() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Options::env(&[(
        "CORS_ALLOWED_ORIGINS",
        "http://www.meiduo.site:8080",
    )]))
    .await;
    let id = crate::helpers::new_id();
    let res = app
        .http
        .get(format!("{}/image_codes/{id}/", app.address))
        .header("origin", "http://www.meiduo.site:8080")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://www.meiduo.site:8080"
    );
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");

    let res = app
        .http
        .get(format!("{}/sms_codes/13812345678/", app.address))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 400, "answered as usual");
    assert!(!res.headers().contains_key("access-control-allow-origin"));

    let res = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/sms_codes/13812345678/", app.address),
        )
        .header("origin", "http://www.meiduo.site:8080")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://www.meiduo.site:8080"
    );
}
