//! The chores apalis-redis leaves undone: a huge backlog of due jobs is still consumed, and
//! finished jobs (done or dead) are deleted from the queue's Redis after the retention time.

use std::time::Duration;

use crate::helpers::{Options, World, eventually, job, queue_settings, spawn_app_with};

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[tokio::test]
async fn a_backlog_larger_than_a_lua_unpack_is_consumed() {
    // 9000 jobs pushed while no worker runs: apalis-redis alone would fail every fetch
    // ("too many results to unpack"); the backlog guard moves them over in chunks.
    let world = World::new().await;
    // One mobile each: a second code for a mobile would replace the first, whose job is then
    // rightly dropped.
    let jobs: Vec<_> = (0..9000)
        .map(|i| {
            let mut j = job();
            j.mobile = shared::domain::Mobile::parse(&format!("137{i:08}")).expect("valid");
            j
        })
        .collect();
    world.store_codes(&jobs);
    let mut storage = world.storage.clone();
    apalis::prelude::TaskSink::push_bulk(&mut storage, jobs)
        .await
        .expect("queued");
    let app = spawn_app_with(&world, Options::env(&[("SMS_PROVIDER", "log")])).await;
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="sent""#, 9000.0, SECS(60))
            .await,
        "sent: {:?}",
        app.metric(r#"sms_jobs_total{outcome="sent""#).await
    );
    app.stop().await;
}

/// What finished jobs leave in the test queue's Redis.
#[derive(Debug, PartialEq, Eq)]
struct Leftovers {
    done: u64,
    dead: u64,
    payloads: u64,
    metas: usize,
}

fn queue_leftovers(world: &World) -> Leftovers {
    let config = queue_settings(&world.queue_url).apalis_config();
    let client = redis::Client::open(world.queue_url.as_str()).expect("url");
    let mut conn = client.get_connection().expect("queue Redis");
    let (done, dead, payloads, metas): (u64, u64, u64, Vec<String>) = redis::pipe()
        .cmd("SCARD")
        .arg(config.done_jobs_set())
        .cmd("SCARD")
        .arg(config.dead_jobs_set())
        .cmd("HLEN")
        .arg(config.job_data_hash())
        // The test's own small database: KEYS is fine here.
        .cmd("KEYS")
        .arg(format!("{}:*", config.job_meta_hash()))
        .query(&mut conn)
        .expect("SCARD, SCARD, HLEN, KEYS");
    Leftovers {
        done,
        dead,
        payloads,
        metas: metas.len(),
    }
}

/// Push `n` jobs and record them as apalis records a job it gave up on (`handle_results.lua`:
/// out of the scheduled set, into the dead set, metadata with status and `done_at` now).
async fn seed_dead_jobs(world: &World, n: usize) {
    let config = queue_settings(&world.queue_url).apalis_config();
    let jobs: Vec<_> = (0..n).map(|_| job()).collect();
    for j in &jobs {
        world.push(j).await;
    }
    let client = redis::Client::open(world.queue_url.as_str()).expect("url");
    let mut conn = client.get_connection().expect("queue Redis");
    let now = chrono::Utc::now().timestamp();
    for j in &jobs {
        let ids = world.task_ids(j);
        assert_eq!(ids.len(), 1);
        let id = &ids[0];
        let () = redis::pipe()
            .cmd("ZREM")
            .arg(config.scheduled_jobs_set())
            .arg(id)
            .ignore()
            .cmd("SADD")
            .arg(config.dead_jobs_set())
            .arg(id)
            .ignore()
            .cmd("HSET")
            .arg(format!("{}:{id}", config.job_meta_hash()))
            .arg(&["status", "Killed", "attempts", "25"][..])
            .arg("done_at")
            .arg(now)
            .ignore()
            .query(&mut conn)
            .expect("ZREM, SADD, HSET");
    }
}

#[tokio::test]
async fn finished_and_dead_jobs_are_kept_for_the_retention_time_then_deleted() {
    let world = World::new().await;
    seed_dead_jobs(&world, 2).await;
    let app = spawn_app_with(&world, Options::env(&[("SMS_PROVIDER", "log")])).await;
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
        Leftovers {
            done: 30,
            dead: 2,
            payloads: 32,
            metas: 32
        },
        "default retention: 600 s"
    );
    app.stop().await;

    let app = spawn_app_with(
        &world,
        Options::env(&[("SMS_PROVIDER", "log"), ("SMS_QUEUE_RETENTION_SECS", "1")]),
    )
    .await;
    let none = Leftovers {
        done: 0,
        dead: 0,
        payloads: 0,
        metas: 0,
    };
    assert!(
        eventually(SECS(10), || queue_leftovers(&world) == none).await,
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
