//! The real binary: configuration errors, SIGTERM draining, SIGKILL and orphan recovery.

use std::time::Duration;

use sms_sandbox::Fault;

use crate::helpers::{Options, WorkerProcess, World, eventually, job};

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[tokio::test]
async fn bad_configuration_exits_2_with_one_line_naming_the_variables() {
    let world = World::new().await;
    let mut worker = WorkerProcess::start(
        &world,
        Options::env(&[
            ("CCP_APP_ID", ""),
            ("SMS_WORKER_CONCURRENCY", "none"),
            ("CCP_BASE_URL", "app.cloopen.com"),
        ]),
    );
    assert_eq!(worker.wait_exit(SECS(10)).await, Some(2));
    let out = worker.output();
    let line = out.trim();
    assert_eq!(line.lines().count(), 1, "{out}");
    for name in ["CCP_APP_ID", "SMS_WORKER_CONCURRENCY", "CCP_BASE_URL"] {
        assert!(line.contains(name), "{name}: {line}");
    }
}

#[tokio::test]
async fn sigterm_finishes_the_job_in_flight_then_exits_0() {
    let world = World::new().await;
    world
        .sandbox
        .inject(Fault::delay(1, Duration::from_millis(1500)));
    let mut worker = WorkerProcess::start(&world, Options::env(&[("CCP_TIMEOUT_MS", "5000")]));
    let j = job();
    world.push(&j).await;
    assert!(
        eventually(SECS(10), || world.calls(&j).len() == 1).await,
        "{}",
        worker.output()
    );
    assert!(world.messages(&j).is_empty(), "still hanging");

    worker.terminate();

    assert_eq!(
        worker.wait_exit(SECS(8)).await,
        Some(0),
        "{}",
        worker.output()
    );
    // The call in flight was finished, not abandoned, before the process exited.
    assert_eq!(world.messages(&j).len(), 1, "{}", worker.output());
    assert_eq!(world.calls(&j).len(), 1);
    assert!(worker.output().contains("in-flight jobs finished"));
}

#[tokio::test]
async fn after_sigterm_no_new_jobs_are_taken() {
    let world = World::new().await;
    world
        .sandbox
        .inject(Fault::delay(1, Duration::from_millis(1000)));
    let mut worker = WorkerProcess::start(&world, Options::env(&[("CCP_TIMEOUT_MS", "5000")]));
    let first = job();
    world.push(&first).await;
    assert!(eventually(SECS(10), || world.calls(&first).len() == 1).await);
    worker.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = job();
    world.push(&second).await;
    assert_eq!(
        worker.wait_exit(SECS(8)).await,
        Some(0),
        "{}",
        worker.output()
    );
    assert_eq!(world.messages(&first).len(), 1);
    assert!(
        world.calls(&second).is_empty(),
        "pushed after SIGTERM: left in the queue"
    );

    // It is still there for the next worker.
    let _next = WorkerProcess::start(&world, Options::default());
    assert!(eventually(SECS(10), || world.messages(&second).len() == 1).await);
}

#[tokio::test]
async fn a_job_of_a_sigkilled_worker_is_delivered_exactly_once_by_another_worker() {
    let world = World::new().await;
    // The first call hangs for 20 s; the client would wait 30 s, so worker A is stuck mid-call
    // holding the job when it is killed.
    world.sandbox.inject(Fault::delay(1, SECS(20)));
    let options = Options::env(&[("CCP_TIMEOUT_MS", "30000")]);
    let mut a = WorkerProcess::start(&world, options.clone());
    let j = job();
    world.push(&j).await;
    assert!(
        eventually(SECS(10), || world.calls(&j).len() == 1).await,
        "{}",
        a.output()
    );

    a.child.kill().expect("SIGKILL");
    a.child.wait().expect("reaped");
    let killed_at = std::time::Instant::now();

    // Heartbeat 1 s, 3 missed: B's heartbeat moves A's job back to the queue within ~5 s.
    let b = WorkerProcess::start(&world, options);
    assert!(
        eventually(SECS(30), || !world.messages(&j).is_empty()).await,
        "not recovered; worker B:\n{}",
        b.output()
    );
    let recovered_after = killed_at.elapsed();
    assert!(recovered_after < SECS(15), "{recovered_after:?}");
    tokio::time::sleep(SECS(2)).await;
    assert_eq!(world.messages(&j).len(), 1);
    let calls = world.calls(&j);
    assert_eq!(calls.len(), 2, "A's hung call and B's: {calls:?}");
    assert_eq!(calls[1].status_code.as_deref(), Some("000000"));
}

#[tokio::test]
async fn a_job_waiting_for_its_retry_at_sigterm_goes_back_to_the_queue_for_the_next_worker() {
    let world = World::new().await;
    world.sandbox.inject(Fault::http_status(1, 503));
    // The retry would come 2–4 s later; SIGTERM arrives before it.
    let mut worker = WorkerProcess::start(
        &world,
        Options::env(&[("SMS_RETRY_BASE_MS", "4000"), ("SMS_RETRY_MAX_MS", "4000")]),
    );
    let j = job();
    world.push(&j).await;
    assert!(eventually(SECS(10), || world.calls(&j).len() == 1).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    worker.terminate();
    assert_eq!(
        worker.wait_exit(SECS(2)).await,
        Some(0),
        "{}",
        worker.output()
    );
    assert!(world.messages(&j).is_empty());

    let next = WorkerProcess::start(&world, Options::default());
    assert!(
        eventually(SECS(10), || world.messages(&j).len() == 1).await,
        "{}",
        next.output()
    );
    assert_eq!(world.calls(&j).len(), 2);
    // The second process continued the first one's count instead of starting again at 1.
    assert_eq!(world.attempts(&j).0, Some(2));
}

#[tokio::test]
async fn the_sigterm_wait_is_bounded_and_the_abandoned_job_is_recovered_by_another_worker() {
    let world = World::new().await;
    // The call hangs 20 s; the worker may wait only 1 s for it after SIGTERM.
    world.sandbox.inject(Fault::delay(1, SECS(20)));
    let options = Options::env(&[("CCP_TIMEOUT_MS", "30000"), ("SHUTDOWN_TIMEOUT_MS", "1000")]);
    let mut a = WorkerProcess::start(&world, options.clone());
    let j = job();
    world.push(&j).await;
    assert!(eventually(SECS(10), || world.calls(&j).len() == 1).await);

    let asked = std::time::Instant::now();
    a.terminate();
    assert_eq!(a.wait_exit(SECS(5)).await, Some(0), "{}", a.output());
    assert!(asked.elapsed() < SECS(3), "{:?}", asked.elapsed());
    assert!(
        a.output().contains("SHUTDOWN_TIMEOUT_MS passed"),
        "{}",
        a.output()
    );
    assert!(world.messages(&j).is_empty());

    // Still registered as A's: another worker recovers it as an orphan.
    let b = WorkerProcess::start(&world, options);
    assert!(
        eventually(SECS(20), || world.messages(&j).len() == 1).await,
        "{}",
        b.output()
    );
    tokio::time::sleep(SECS(1)).await;
    assert_eq!(world.messages(&j).len(), 1);
}
