//! `/healthz`, `/readyz`, unknown routes and wrong methods.

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
