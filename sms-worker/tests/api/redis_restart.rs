//! The queue's Redis restarts (losing its data): the worker notices, registers again under a
//! new name and goes on delivering, without a restart of its own.

use std::time::Duration;

use apalis::prelude::TaskSink;

use crate::helpers::{World, eventually, job, queue_settings, retry_until, spawn_app};

#[tokio::test]
async fn after_a_queue_redis_restart_the_worker_resumes_by_itself() {
    let mut server = harness::RedisServer::start();
    let world = World::with_queue_url(server.url(0)).await;
    let app = spawn_app(&world).await;

    let before = job();
    world.push(&before).await;
    assert!(
        eventually(Duration::from_secs(10), || world.messages(&before).len()
            == 1)
        .await
    );

    // Down for a while: the worker fails, waits, tries again with growing pauses.
    server.stop();
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.expect("JSON");
    assert!(body["failed"]["queue_redis"].is_string(), "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.restart();

    let after = job();
    world.store_code(&after);
    let storage = queue_settings(&server.url(0))
        .storage(queue_settings(&server.url(0)).connection().expect("conn"));
    retry_until(Duration::from_secs(10), || {
        let mut s = storage.clone();
        let j = after.clone();
        async move { s.push(j).await }
    })
    .await;
    assert!(
        eventually(Duration::from_secs(30), || world.messages(&after).len()
            == 1)
        .await,
        "not delivered after the restart"
    );
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    app.stop().await;
}
