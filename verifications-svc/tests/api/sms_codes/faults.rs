//! `GET /sms_codes/` when Redis or the queue fails: exact 503s, what is given back, and no second SMS after a lost push reply.

use super::*;

#[tokio::test]
async fn redis_down_is_a_503_and_redis_back_is_a_200_again_in_the_same_process() {
    let mut server = harness::RedisServer::start();
    let app = crate::helpers::spawn_app_with_redis(server.url(0)).await;
    let url = server.url(0);
    let seed = |id: &str| {
        let mut conn = redis::Client::open(url.as_str())
            .expect("URL")
            .get_connection()
            .expect("connect");
        let _: () = conn
            .set_ex(format!("img_{id}"), "ACDE", 300)
            .expect("SETEX");
    };
    let id = new_id();
    seed(&id);
    assert_eq!(app.sms_code(MOBILE, &id, "ACDE").await.status(), 200);

    server.stop();
    let res = app.sms_code("13912345678", &new_id(), "ACDE").await;
    assert_eq!(res.headers()["retry-after"], "5");
    let (status, body) = status_and_body(res).await;
    assert_eq!((status, body.as_str()), (503, UNAVAILABLE));

    server.restart();
    let id = new_id();
    let mut last = (0, String::new());
    for _ in 0..50 {
        seed(&id);
        last = status_and_body(app.sms_code("13912345678", &id, "ACDE").await).await;
        if last.0 != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (last.0, last.1.as_str()),
        (200, OK),
        "recovered without a restart"
    );
    assert_eq!(app.queued_jobs().len(), 2);
}

#[tokio::test]
async fn a_queue_failure_is_a_503_that_gives_the_flag_code_and_limit_hits_back() {
    let mut queue = harness::RedisServer::start();
    let app = spawn_app_with(Options {
        queue_url: Some(queue.url(0)),
        ..Options::default()
    })
    .await;
    // A code sent earlier (its 60 s flag has passed) is still valid, with two wrong guesses.
    let _: () = app
        .redis_conn()
        .set_ex(format!("sms_{MOBILE}"), "123456", 200)
        .expect("SETEX");
    let _: () = app
        .redis_conn()
        .set_ex(format!("sms_attempts_{MOBILE}"), 2, 200)
        .expect("SETEX");
    queue.stop();
    let res = send(&app, MOBILE).await;
    assert_eq!(res.headers()["retry-after"], "5");
    let (status, body) = status_and_body(res).await;
    assert_eq!((status, body.as_str()), (503, UNAVAILABLE));
    assert_eq!(
        app.value(&format!("send_flag_{MOBILE}")),
        None,
        "flag released"
    );
    assert_eq!(
        app.value(&format!("sms_{MOBILE}")).as_deref(),
        Some("123456"),
        "the unsent code is gone and the previous one is back"
    );
    let ttl = app.ttl(&format!("sms_{MOBILE}"));
    assert!((190..=200).contains(&ttl), "the life it had left: {ttl}");
    assert_eq!(
        app.value(&format!("sms_attempts_{MOBILE}")).as_deref(),
        Some("2"),
        "no fresh guesses at the restored code"
    );
    let ttl = app.ttl(&format!("sms_attempts_{MOBILE}"));
    assert!((190..=200).contains(&ttl), "{ttl}");
    assert_eq!(
        app.value(&format!("rl:sms_mobile:{MOBILE}")).as_deref(),
        Some("0")
    );
    assert_eq!(app.value("rl:sms_ip:127.0.0.1").as_deref(), Some("0"));
    assert_eq!(
        app.metric(r#"sms_sends_refused_total{reason="unavailable",service="verifications-svc"}"#)
            .await,
        1
    );

    queue.restart();
    let mut status = 0;
    for _ in 0..50 {
        status = send(&app, MOBILE).await.status().as_u16();
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, 200,
        "the user can retry at once, and the queue reconnects"
    );
    let jobs = app.queued_jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        app.value(&format!("sms_{MOBILE}")).as_deref(),
        Some(jobs[0].code.as_str())
    );
}

/// `store::release_send` on its own, for the races an HTTP test cannot time: it restores the
/// previous code only while the key holds this request's code, and never an expired one.
#[tokio::test]
async fn releasing_a_claim_restores_the_previous_code_only_over_its_own() {
    use shared::domain::ImageCodeId;
    use shared::domain::{Mobile, SmsCode};
    use verifications_svc::store::{self, Captcha, Claim, ClaimOutcome, SendLimits};

    let app = spawn_app().await;
    let conn = store::connect(&app.redis.url(), Duration::from_secs(2)).expect("connect");
    let mobile = Mobile::parse(MOBILE).expect("mobile");
    let limits = SendLimits {
        per_mobile_per_day: 100,
        per_ip_per_hour: 100,
        ..SendLimits::default()
    };
    let code = SmsCode::parse("654321").expect("code");
    // Every claim answers the same captcha, stored again before each.
    let captcha = ImageCodeId::parse(&new_id()).expect("id");
    let claim = |request_id| Claim {
        mobile: &mobile,
        ip: None,
        captcha: Captcha {
            id: &captcha,
            answer: "ACDE",
        },
        code: &code,
        request_id,
    };
    let seed_captcha = || {
        let _: () = app
            .redis_conn()
            .set_ex(format!("img_{captcha}"), "ACDE", 300)
            .expect("SETEX");
    };
    let seed = |value: &str, ttl: u64| {
        let _: () = app
            .redis_conn()
            .set_ex(format!("sms_{MOBILE}"), value, ttl)
            .expect("SETEX");
        let _: () = app
            .redis_conn()
            .del(format!("send_flag_{MOBILE}"))
            .expect("DEL");
        seed_captcha();
    };
    let previous_of = |outcome: ClaimOutcome| match outcome {
        ClaimOutcome::Claimed { previous, .. } => previous,
        other => panic!("not claimed: {other:?}"),
    };

    // Claimed over a previous code: it comes back in the claim's reply with its TTL.
    seed("111111", 100);
    let first = claim(uuid::Uuid::new_v4());
    let previous = previous_of(
        store::claim_send(&conn, &first, limits)
            .await
            .expect("claim"),
    )
    .expect("a previous code");
    assert_eq!(previous.code, "111111");
    let ttl = previous.ttl.expect("a TTL").as_millis();
    assert!((99_000..=100_000).contains(&ttl), "{ttl}");
    assert_eq!((previous.attempts, previous.attempts_ttl), (0, None));
    assert_eq!(
        app.value(&format!("sms_{MOBILE}")).as_deref(),
        Some("654321")
    );

    // Another send replaced this request's code meanwhile: the release leaves it alone.
    let _: () = app
        .redis_conn()
        .set_ex(format!("sms_{MOBILE}"), "222222", 300)
        .expect("SETEX");
    store::release_send(&conn, &first, false, Some(&previous), Duration::ZERO)
        .await
        .expect("release");
    assert_eq!(
        app.value(&format!("sms_{MOBILE}")).as_deref(),
        Some("222222")
    );
    assert_eq!(app.value(&format!("sms_attempts_{MOBILE}")), None);

    // The previous code's life ran out before the release: deleted, not brought back to life.
    seed("333333", 1);
    let second = claim(uuid::Uuid::new_v4());
    let previous = previous_of(
        store::claim_send(&conn, &second, limits)
            .await
            .expect("claim"),
    );
    store::release_send(
        &conn,
        &second,
        false,
        previous.as_ref(),
        Duration::from_secs(2),
    )
    .await
    .expect("release");
    assert_eq!(app.value(&format!("sms_{MOBILE}")), None);

    // No previous code: the new one is deleted, as before.
    let _: () = app
        .redis_conn()
        .del(format!("send_flag_{MOBILE}"))
        .expect("DEL");
    seed_captcha();
    let third = claim(uuid::Uuid::new_v4());
    let previous = previous_of(
        store::claim_send(&conn, &third, limits)
            .await
            .expect("claim"),
    );
    assert_eq!(previous, None);
    store::release_send(&conn, &third, false, None, Duration::ZERO)
        .await
        .expect("release");
    assert_eq!(app.value(&format!("sms_{MOBILE}")), None);
    assert_eq!(app.value(&format!("send_flag_{MOBILE}")), None);
}

/// A push that times out after Redis stored the job: the queue Redis is paused (`CLIENT PAUSE`,
/// real server, no stand-in) for longer than `QUEUE_TIMEOUT_MS` (300 ms), so the push script
/// waits in its socket, the client gives up, and Redis then runs it: the job is stored although
/// the service saw an error. The service's lookup of the job by its task id (the request id)
/// queues behind it on the same connection and finds it: the answer is 200, the flag and the
/// code stay, no limit hit is refunded, and a retry within 60 s is refused, so one SMS is sent.
#[tokio::test]
async fn a_push_that_times_out_after_redis_stored_the_job_is_a_success_not_a_second_sms() {
    let queue = harness::RedisServer::start();
    let app = spawn_app_with(Options {
        queue_url: Some(queue.url(0)),
        ..Options::default()
    })
    .await;
    // Warm the queue connection up, so the paused command is the push itself.
    assert_eq!(send(&app, "13900000001").await.status().as_u16(), 200);
    let mut control = redis::Client::open(queue.url(0))
        .expect("URL")
        .get_connection()
        .expect("the queue Redis accepts connections");
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(450)
        .arg("ALL")
        .query(&mut control)
        .expect("CLIENT PAUSE");
    let started = std::time::Instant::now();
    let (status, body) = status_and_body(send(&app, MOBILE).await).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the push really waited for the paused Redis: {:?}",
        started.elapsed()
    );
    assert_eq!((status, body.as_str()), (200, OK));

    let jobs: Vec<_> = app
        .queued_jobs()
        .into_iter()
        .filter(|j| j.mobile.as_str() == MOBILE)
        .collect();
    assert_eq!(jobs.len(), 1, "exactly one job for the mobile");
    let flag = app
        .value(&format!("send_flag_{MOBILE}"))
        .expect("the send flag is kept");
    assert_eq!(flag, jobs[0].request_id.to_string(), "held by this request");
    assert_eq!(
        app.value(&format!("sms_{MOBILE}")).as_deref(),
        Some(jobs[0].code.as_str()),
        "the queued code is the stored one"
    );
    assert_eq!(
        app.value(&format!("rl:sms_mobile:{MOBILE}")).as_deref(),
        Some("1"),
        "the send counts against the limit"
    );
    let (status, body) = status_and_body(send(&app, MOBILE).await).await;
    assert_eq!(
        (status, body.as_str()),
        (400, FREQUENT),
        "a retry sends no second SMS"
    );
    assert_eq!(app.queued_jobs().len(), 2, "the warm-up job and this one");
    assert_eq!(
        app.metric(r#"sms_sends_refused_total{reason="unavailable",service="verifications-svc"}"#)
            .await,
        0
    );
}

/// The job's apalis task id is its request id, so the lookup after a failed push is exact.
#[tokio::test]
async fn the_job_is_stored_under_its_request_id_as_task_id() {
    let app = spawn_app().await;
    assert_eq!(send(&app, MOBILE).await.status().as_u16(), 200);
    let jobs = app.queued_jobs();
    assert_eq!(jobs.len(), 1);
    let mut conn = redis::Client::open(app.queue.redis_url.as_str())
        .expect("URL")
        .get_connection()
        .expect("connects");
    let stored: bool = conn
        .hexists(
            app.queue.apalis_config().job_data_hash(),
            jobs[0].request_id.to_string(),
        )
        .expect("HEXISTS");
    assert!(stored, "the data hash field is the request id");
}

/// Redis (verify codes and queue on one server) restarts, data kept, between two requests of
/// one client, with no pause: both are a 200 `OK` with their job queued. The first commands
/// after the restart (the captcha script, then the queue push) would otherwise meet the
/// sockets the restart closed.
#[tokio::test]
async fn a_redis_restart_between_two_requests_costs_the_user_nothing() {
    let mut server = harness::RedisServer::start();
    let app = spawn_app_with(Options {
        redis_url: Some(server.url(0)),
        queue_url: Some(server.url(1)),
        // One HTTP worker: both requests use the same, by then closed, connections.
        env: vec![("HTTP_WORKERS", "1".to_owned())],
    })
    .await;
    let ids = [new_id(), new_id()];
    let mut conn = redis::Client::open(server.url(0))
        .expect("URL")
        .get_connection()
        .expect("connect");
    for id in &ids {
        let _: () = conn
            .set_ex(format!("img_{id}"), "ACDE", 300)
            .expect("SETEX");
    }
    let mobiles = ["13812345678", "13912345678"];
    let (status, body) = status_and_body(app.sms_code(mobiles[0], &ids[0], "ACDE").await).await;
    assert_eq!((status, body.as_str()), (200, OK));
    server.restart_keeping_data();
    let (status, body) = status_and_body(app.sms_code(mobiles[1], &ids[1], "ACDE").await).await;
    assert_eq!(
        (status, body.as_str()),
        (200, OK),
        "right after the restart"
    );
    let mut queued: Vec<String> = app
        .queued_jobs()
        .into_iter()
        .map(|j| j.mobile.as_str().to_owned())
        .collect();
    queued.sort();
    assert_eq!(queued, mobiles, "one job each, none lost, none doubled");
}
