//! The chores apalis-redis leaves undone: a huge backlog of due jobs is still consumed, and
//! finished jobs are deleted from the queue's Redis after the retention time.

use std::time::Duration;

use crate::helpers::{World, eventually, job, queue_settings, spawn_app, with};

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[tokio::test]
async fn a_backlog_larger_than_a_lua_unpack_is_consumed() {
    // 9000 jobs pushed while no worker runs: apalis-redis alone would fail every fetch
    // ("too many results to unpack"); the backlog guard moves them over in chunks.
    let world = World::new().await;
    let jobs: Vec<_> = (0..9000).map(|_| job()).collect();
    let mut storage = world.storage.clone();
    apalis::prelude::TaskSink::push_bulk(&mut storage, jobs)
        .await
        .expect("queued");
    let app = spawn_app(with(world.vars(), &[("SMS_PROVIDER", "log")])).await;
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="sent""#, 9000.0, SECS(60))
            .await,
        "sent: {:?}",
        app.metric(r#"sms_jobs_total{outcome="sent""#).await
    );
    app.stop().await;
}

/// (finished jobs in the done set, payloads in the data hash) of the test queue.
fn queue_leftovers(world: &World) -> (u64, u64) {
    let config = queue_settings(&world.queue_url).apalis_config();
    let client = redis::Client::open(world.queue_url.as_str()).expect("url");
    let mut conn = client.get_connection().expect("queue Redis");
    redis::pipe()
        .cmd("SCARD")
        .arg(config.done_jobs_set())
        .cmd("HLEN")
        .arg(config.job_data_hash())
        .query(&mut conn)
        .expect("SCARD, HLEN")
}

#[tokio::test]
async fn finished_jobs_are_kept_for_the_retention_time_then_deleted() {
    let world = World::new().await;
    let app = spawn_app(with(world.vars(), &[("SMS_PROVIDER", "log")])).await;
    for _ in 0..30 {
        world.push(&job()).await;
    }
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="sent""#, 30.0, SECS(10))
            .await
    );
    tokio::time::sleep(SECS(2)).await;
    assert_eq!(
        queue_leftovers(&world),
        (30, 30),
        "default retention: an hour"
    );
    app.stop().await;

    let app = spawn_app(with(
        world.vars(),
        &[("SMS_PROVIDER", "log"), ("SMS_QUEUE_RETENTION_SECS", "1")],
    ))
    .await;
    assert!(
        eventually(SECS(10), || queue_leftovers(&world) == (0, 0)).await,
        "left: {:?}",
        queue_leftovers(&world)
    );
    app.stop().await;
}

#[tokio::test]
async fn jobs_left_in_an_in_flight_set_are_handed_back_to_the_queue() {
    let world = World::new().await;
    let config = queue_settings(&world.queue_url).apalis_config();
    let inflight = format!("{}:gone-worker", config.inflight_jobs_set());
    let mut conn = queue_settings(&world.queue_url)
        .connection()
        .expect("connection");
    let _: i64 = redis::cmd("SADD")
        .arg(&inflight)
        .arg(&["a", "b", "c"][..])
        .query_async(&mut conn)
        .await
        .expect("SADD");

    let moved = sms_worker::housekeeping::release_inflight(
        &mut conn,
        &inflight,
        &config.active_jobs_list(),
    )
    .await
    .expect("released");

    assert_eq!(moved, 3);
    let mut active: Vec<String> = redis::cmd("LRANGE")
        .arg(config.active_jobs_list())
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("LRANGE");
    active.sort();
    assert_eq!(active, ["a", "b", "c"]);
    let left: i64 = redis::cmd("SCARD")
        .arg(&inflight)
        .query_async(&mut conn)
        .await
        .expect("SCARD");
    assert_eq!(left, 0);
}
