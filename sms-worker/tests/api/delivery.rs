//! Delivering jobs through the real queue to the sandbox: once, with the right content;
//! retryable failures retried with growing delays; permanent ones not; expired codes dropped;
//! redelivered jobs not sent twice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sms_sandbox::Fault;

use crate::helpers::{
    Finished, Options, TestApp, World, eventually, job, spawn_app, spawn_app_with,
};
use shared::jobs::SendSmsCode;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[tokio::test]
async fn one_job_is_delivered_exactly_once_with_the_code_the_minutes_and_its_request_id() {
    let world = World::new().await;
    let app = spawn_app(&world).await;
    let j = job();

    world.push(&j).await;

    assert!(eventually(SECS(10), || !world.messages(&j).is_empty()).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = world.messages(&j);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m.datas, [j.code.as_str().to_owned(), "5".to_owned()]);
    assert_eq!(
        m.req_id.as_deref(),
        Some(j.request_id.simple().to_string().as_str())
    );
    assert_eq!(m.template_id, "1");
    assert_eq!(m.app_id, world.sandbox.config().app_id);
    assert_eq!(world.calls(&j).len(), 1);
    // The marker lives a little longer than the code (300 s + 60 s margin).
    let ttl = world.marker_ttl(&j);
    assert!((350..=360).contains(&ttl), "marker TTL {ttl}");
    // One attempt counted, forgotten no later than the code expires.
    let (count, ttl_ms) = world.attempts(&j);
    assert_eq!(count, Some(1));
    assert!(
        (290_000..=300_000).contains(&ttl_ms),
        "attempts TTL {ttl_ms} ms"
    );
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="sent""#, 1.0, SECS(2))
            .await
    );
    app.stop().await;
}

/// Gaps between consecutive calls, in ms.
fn gaps(times: &[DateTime<Utc>]) -> Vec<i64> {
    times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect()
}

#[tokio::test]
async fn retryable_failures_are_retried_with_growing_delays_then_delivered_once() {
    let world = World::new().await;
    let app = spawn_app(&world).await;
    let cases = [
        ("HTTP 503 from a gateway", Fault::http_status(3, 503)),
        ("CCP 160000 system error", Fault::status_code(3, "160000")),
        (
            "CCP 111111 too many concurrent requests",
            Fault::status_code(3, "111111"),
        ),
    ];
    for (why, fault) in cases {
        world.sandbox.inject(fault);
        let j = job();
        world.push(&j).await;
        assert!(
            eventually(SECS(10), || !world.messages(&j).is_empty()).await,
            "{why}: not delivered"
        );
        let calls = world.calls(&j);
        assert_eq!(
            calls.len(),
            4,
            "{why}: three failures then success: {calls:?}"
        );
        assert_eq!(calls[3].status_code.as_deref(), Some("000000"), "{why}");
        // Backoff base 200 ms, doubling, equal jitter: [100,200], [200,400], [400,800] ms,
        // plus the time of the failed call itself (generous slack for a loaded machine).
        let g = gaps(&calls.iter().map(|c| c.received_at).collect::<Vec<_>>());
        for (i, (lo, hi)) in [(100, 500), (200, 700), (400, 1100)].iter().enumerate() {
            assert!(
                (*lo..=*hi).contains(&g[i]),
                "{why}: gap {i} = {} ms, all {g:?}",
                g[i]
            );
        }
        assert_eq!(world.messages(&j).len(), 1, "{why}");
    }
    assert!(
        app.wait_metric("sms_retries_total", 9.0, SECS(2)).await,
        "three retries per case"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_call_that_hangs_past_the_timeout_is_retried_and_the_message_arrives_once() {
    let world = World::new().await;
    // CCP_TIMEOUT_MS is 1000: the first call hangs 4 s, the client gives up and retries.
    // The hung call is answered later; CCP's reqId de-duplication keeps it from a second send.
    let app = spawn_app(&world).await;
    world
        .sandbox
        .inject(Fault::delay(1, Duration::from_millis(4000)));
    let j = job();
    world.push(&j).await;

    assert!(eventually(SECS(10), || !world.messages(&j).is_empty()).await);
    let calls = world.calls(&j);
    assert_eq!(calls.len(), 2, "{calls:?}");
    let gap = (calls[1].received_at - calls[0].received_at).num_milliseconds();
    assert!(
        (1000..2000).contains(&gap),
        "retried after the 1 s timeout: {gap} ms"
    );
    // Wait until the hung call has been answered too.
    assert!(
        eventually(SECS(8), || world
            .calls(&j)
            .iter()
            .all(|c| c.status_code.is_some()))
        .await
    );
    assert_eq!(world.messages(&j).len(), 1);
    let codes: Vec<Option<String>> = world.calls(&j).into_iter().map(|c| c.status_code).collect();
    assert_eq!(codes, [Some("160054".into()), Some("000000".into())]);
    app.stop().await;
}

#[tokio::test]
async fn permanent_failures_are_not_retried() {
    let world = World::new().await;
    let app = spawn_app(&world).await;
    let cases = [
        ("daily cap per template and number", "160040"),
        ("bad number format", "160042"),
        ("number blacklisted", "160034"),
        ("account balance", "111142"),
        ("sent too often to this number", "160038"),
    ];
    for (n, (why, code)) in cases.iter().enumerate() {
        world.sandbox.inject(Fault::status_code(1, code));
        let j = job();
        world.push(&j).await;
        let done = app
            .wait_metric(
                r#"sms_jobs_total{outcome="permanent""#,
                (n + 1) as f64,
                SECS(10),
            )
            .await;
        assert!(done, "{why}: not finished as permanent");
        // Finished for good in apalis (an `Err` would be `Failed` and scheduled again), so
        // the calls below are all there will ever be.
        assert_eq!(
            world.wait_finished(&j, SECS(5)).await,
            Finished::done(),
            "{why}"
        );
        let calls = world.calls(&j);
        assert_eq!(calls.len(), 1, "{why}: {calls:?}");
        assert_eq!(calls[0].status_code.as_deref(), Some(*code), "{why}");
        assert!(world.messages(&j).is_empty(), "{why}");
    }
    assert_eq!(app.metric("sms_retries_total").await, Some(0.0));
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_auth_token_is_rejected_by_the_sandbox_with_111109_and_not_retried() {
    let world = World::new().await;
    let wrong = "0".repeat(32);
    let app = spawn_app_with(&world, Options::env(&[("CCP_AUTH_TOKEN", wrong.as_str())])).await;
    let j = job();
    world.push(&j).await;
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="permanent""#, 1.0, SECS(10))
            .await
    );
    assert_eq!(world.wait_finished(&j, SECS(5)).await, Finished::done());
    let codes: Vec<Option<String>> = world.calls(&j).into_iter().map(|c| c.status_code).collect();
    assert_eq!(codes, [Some("111109".into())]);
    assert!(world.messages(&j).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_expired_job_is_dropped_without_calling_the_provider() {
    let world = World::new().await;
    let app = spawn_app(&world).await;
    let mut j = job();
    j.created_at = Utc::now() - chrono::Duration::minutes(5) - chrono::Duration::seconds(1);
    world.push(&j).await;
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="expired""#, 1.0, SECS(10))
            .await
    );
    assert_eq!(world.wait_finished(&j, SECS(5)).await, Finished::done());
    assert!(world.calls(&j).is_empty());
    assert!(world.messages(&j).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_retry_that_would_come_after_the_code_expires_is_not_made() {
    let world = World::new().await;
    // Backoff of at least 2 s, but the code expires in about 1.5 s.
    let app = spawn_app_with(
        &world,
        Options::env(&[("SMS_RETRY_BASE_MS", "4000"), ("SMS_RETRY_MAX_MS", "4000")]),
    )
    .await;
    world.sandbox.inject(Fault::http_status(5, 503));
    let mut j = job();
    j.ttl_minutes = 1;
    j.created_at = Utc::now() - chrono::Duration::milliseconds(58_500);
    world.push(&j).await;
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="expired""#, 1.0, SECS(10))
            .await
    );
    assert_eq!(world.wait_finished(&j, SECS(5)).await, Finished::done());
    assert_eq!(world.calls(&j).len(), 1, "one attempt, no retry");
    assert_eq!(app.metric("sms_retries_total").await, Some(0.0));
    app.stop().await;
}

#[tokio::test]
async fn retries_stop_after_five_attempts() {
    let world = World::new().await;
    let app = spawn_app_with(&world, Options::env(&[("SMS_RETRY_BASE_MS", "20")])).await;
    world.sandbox.inject(Fault::status_code(10, "160000"));
    let j = job();
    world.push(&j).await;
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="exhausted""#, 1.0, SECS(10))
            .await
    );
    assert_eq!(world.wait_finished(&j, SECS(5)).await, Finished::done());
    assert_eq!(world.calls(&j).len(), 5);
    assert!(world.messages(&j).is_empty());
    // Counted in Redis, which forgets the count no later than the code expires.
    let (count, ttl_ms) = world.attempts(&j);
    assert_eq!(count, Some(5));
    assert!((1..=300_000).contains(&ttl_ms), "attempts TTL {ttl_ms} ms");
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_job_gets_only_the_attempts_earlier_deliveries_left() {
    let world = World::new().await;
    let app = spawn_app_with(&world, Options::env(&[("SMS_RETRY_BASE_MS", "20")])).await;
    world.sandbox.inject(Fault::status_code(20, "160000"));
    // (attempts an earlier worker left, provider calls still allowed)
    let cases = [
        ("four used: one more", 4, 1),
        ("all five used: none", 5, 0),
        (
            "more than five (a smaller SMS_MAX_ATTEMPTS earlier): none",
            7,
            0,
        ),
    ];
    for (n, (why, used, more)) in cases.into_iter().enumerate() {
        let j = job();
        world.set_attempts(&j, used);
        world.push(&j).await;
        assert!(
            app.wait_metric(
                r#"sms_jobs_total{outcome="exhausted""#,
                (n + 1) as f64,
                SECS(10)
            )
            .await,
            "{why}: not finished as exhausted"
        );
        // Done in apalis: the calls below are all there will ever be.
        assert_eq!(
            world.wait_finished(&j, SECS(5)).await,
            Finished::done(),
            "{why}"
        );
        let calls = world.calls(&j);
        assert_eq!(calls.len(), more, "{why}: {calls:?}");
        assert!(
            calls
                .iter()
                .all(|c| c.status_code.as_deref() == Some("160000")),
            "{why}: {calls:?}"
        );
        assert!(world.messages(&j).is_empty(), "{why}");
        let (count, _) = world.attempts(&j);
        assert_eq!(count, Some(used + 1), "{why}: one INCR per try");
    }
    assert_eq!(app.metric("sms_retries_total").await, Some(0.0));
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_job_is_not_sent_again() {
    let world = World::new().await;
    let app = spawn_app(&world).await;
    let j = job();
    world.push(&j).await;
    assert!(eventually(SECS(10), || !world.messages(&j).is_empty()).await);

    // The same job again (same request id), as an at-least-once queue may deliver it.
    world.push(&j).await;
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="already_sent""#, 1.0, SECS(10))
            .await
    );
    assert_eq!(
        world.calls(&j).len(),
        1,
        "the marker stopped the second call"
    );

    // Had the marker been lost (a crash between the provider's answer and the marker write),
    // the provider's reqId de-duplication answers 160054, which counts as sent.
    let mut conn = world.verify.client().get_connection().expect("redis");
    let _: i64 = redis::cmd("DEL")
        .arg(shared::keys::sms_sent(&j.request_id))
        .query(&mut conn)
        .expect("DEL");
    assert_redelivery_is_stopped_by_the_providers_req_id(&world, &app, &j).await;
    app.stop().await;
}

#[tokio::test]
async fn many_jobs_pushed_at_once_are_each_delivered_once() {
    let world = World::new().await;
    let app = spawn_app(&world).await;
    let jobs: Vec<_> = (0..200).map(|_| job()).collect();
    for j in &jobs {
        world.push(j).await;
    }
    assert!(eventually(SECS(20), || world.sandbox.messages().len() >= 200).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = world.sandbox.messages();
    assert_eq!(all.len(), 200);
    let mut ids: Vec<String> = all.into_iter().filter_map(|m| m.req_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "every request id once");
    app.stop().await;
}

/// The verify-codes Redis goes down (data kept) while two jobs arrive: the redelivery of one
/// already sent and a new one. Neither is sent blind: each waits for Redis, and once Redis is
/// back the new code goes out exactly once and the delivered one is not sent again.
#[tokio::test]
async fn with_the_verify_redis_down_jobs_wait_and_each_code_is_sent_exactly_once() {
    let mut server = harness::RedisServer::start();
    let mut world = World::new().await;
    world.verify = harness::TestRedis {
        port: server.port,
        db: 0,
    };
    let app = spawn_app(&world).await;
    let delivered = job();
    world.push(&delivered).await;
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="sent""#, 1.0, SECS(10))
            .await
    );
    let fresh = job();
    world.store_code(&fresh);

    server.stop_keeping_data();
    world.enqueue(&delivered).await;
    world.enqueue(&fresh).await;
    // Until the worker met the outage (or, as it used to, sent blind).
    let deadline = std::time::Instant::now() + SECS(10);
    while app.metric("sms_verify_redis_waits_total").await < Some(2.0)
        && world.calls(&delivered).len() < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no job met the outage"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.start_again();

    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="already_sent""#, 1.0, SECS(20))
            .await
    );
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="sent""#, 2.0, SECS(20))
            .await
    );
    assert_eq!(world.calls(&delivered).len(), 1, "not sent again");
    assert_eq!(world.messages(&delivered).len(), 1);
    assert_eq!(
        world.calls(&fresh).len(),
        1,
        "sent once, after Redis was back"
    );
    assert_eq!(world.messages(&fresh).len(), 1);
    assert_eq!(world.messages(&fresh)[0].datas[0], fresh.code.as_str());
    app.stop().await;
}

/// Beside valid jobs, one that is not JSON and one from a producer that renamed a field: the
/// valid ones are delivered once each, the other two are in the dead-letter list with the
/// reason and finished (never retried), and the one worker never had to be replaced.
#[tokio::test]
async fn undecodable_jobs_go_to_the_dead_letter_list_and_the_worker_goes_on() {
    let world = World::new().await;
    let app = spawn_app(&world).await;
    let (first, second) = (job(), job());
    world.push(&first).await;
    let garbage = b"garbage".to_vec();
    let garbage_id = world.push_raw(&garbage);
    let renamed = serde_json::to_string(&job())
        .expect("JSON")
        .replace("\"code\"", "\"sms_code\"")
        .into_bytes();
    let renamed_id = world.push_raw(&renamed);
    world.push(&second).await;

    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="dead_letter""#, 2.0, SECS(10))
            .await
    );
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="sent""#, 2.0, SECS(10))
            .await
    );
    for j in [&first, &second] {
        assert_eq!(world.calls(j).len(), 1);
        assert_eq!(world.messages(j).len(), 1);
    }
    let workers = world.workers();
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert!(
        workers[0].ends_with("-1"),
        "the first worker, never replaced: {workers:?}"
    );

    let mut letters = world.dead_letters();
    letters.sort_by_key(|l| l["task_id"].as_str().map(str::to_owned));
    let mut want = vec![(garbage_id, garbage), (renamed_id, renamed)];
    want.sort();
    assert_eq!(letters.len(), 2, "{letters:?}");
    for (letter, (id, payload)) in letters.iter().zip(&want) {
        let reason = serde_json::from_slice::<SendSmsCode>(payload)
            .expect_err("not a job")
            .to_string();
        assert_eq!(letter["task_id"], id.as_str());
        assert_eq!(letter["reason"], reason.as_str());
        assert_eq!(letter["payload"], String::from_utf8_lossy(payload).as_ref());
        assert_eq!(letter["worker"], workers[0].as_str());
        assert_eq!(
            world.finished_task(id),
            Some(Finished::done()),
            "acknowledged"
        );
    }
    app.stop().await;
}

/// Push `j` a second time after its first delivery, with no sent marker to stop it: the
/// provider's reqId de-duplication answers 160054, which the worker counts as sent, and the
/// inbox still holds one message.
async fn assert_redelivery_is_stopped_by_the_providers_req_id(
    world: &World,
    app: &TestApp,
    j: &SendSmsCode,
) {
    world.push(j).await;
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="sent""#, 2.0, SECS(10))
            .await
    );
    let codes: Vec<Option<String>> = world.calls(j).into_iter().map(|c| c.status_code).collect();
    assert_eq!(codes, [Some("000000".into()), Some("160054".into())]);
    assert_eq!(world.messages(j).len(), 1);
}
