//! Three providers behind `SMS_PROVIDERS`: each one's real protocol checked by the sandbox,
//! failover after definite failures, no second provider after an ambiguous one, the breakers,
//! permanent refusals by scope, and the daily quota given back when nobody delivered.

use std::time::Duration;

use shared::jobs::SendSmsCode;
use sms_sandbox::Fault;

use crate::helpers::{Options, TestApp, WorkerProcess, World, eventually, job, spawn_app_with};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A loopback port nothing listens on: a provider that is down (connection refused).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

async fn delivered(world: &World, j: &SendSmsCode) -> sms_sandbox::Message {
    assert!(
        eventually(SECS(15), || !world.messages(j).is_empty()).await,
        "not delivered: {:?}",
        world.sandbox.calls()
    );
    world.messages(j).remove(0)
}

#[tokio::test]
async fn each_provider_sends_through_its_real_protocol_and_the_sandbox_verifies_it() {
    let world = World::new().await;
    for provider in ["ccp", "aliyun", "tencent"] {
        let app = spawn_app_with(&world, Options::env(&[("SMS_PROVIDERS", provider)])).await;
        let j = job();
        world.push(&j).await;
        let m = delivered(&world, &j).await;
        let c = world.sandbox.config();
        let id = j.request_id.simple().to_string();
        let code = j.code.as_str().to_owned();
        let (app_id, template, datas) = match provider {
            "ccp" => (c.app_id.clone(), "1".to_owned(), vec![code, "5".into()]),
            "aliyun" => (
                c.aliyun.access_key_id.clone(),
                c.aliyun.template_code.clone(),
                vec![code],
            ),
            _ => (
                c.tencent.sdk_app_id.clone(),
                c.tencent.template_id.clone(),
                vec![code, "5".into()],
            ),
        };
        assert_eq!(
            (
                m.provider.as_str(),
                m.to.as_str(),
                m.app_id,
                m.template_id,
                m.datas,
                m.req_id
            ),
            (
                provider,
                j.mobile.as_str(),
                app_id,
                template,
                datas,
                Some(id)
            ),
        );
        let calls = world.sends(&j, provider);
        let ok = ["000000", "OK", "Ok"];
        assert_eq!(calls.len(), 1, "{provider}: {calls:?}");
        assert!(
            ok.contains(&calls[0].status_code.as_deref().unwrap_or_default()),
            "{provider}: {calls:?}"
        );
        assert!(
            app.wait_metric(
                &format!(r#"sms_provider_jobs_total{{outcome="sent",provider="{provider}""#),
                1.0,
                SECS(2)
            )
            .await,
            "{provider}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn with_the_primary_down_every_code_is_delivered_once_by_the_second() {
    let world = World::new().await;
    let down = closed_port_url();
    let app = spawn_app_with(
        &world,
        Options::env(&[("SMS_PROVIDERS", "ccp,aliyun"), ("CCP_BASE_URL", &down)]),
    )
    .await;
    let jobs: Vec<SendSmsCode> = (0..8).map(|_| job()).collect();
    for j in &jobs {
        world.push(j).await;
    }
    for j in &jobs {
        let m = delivered(&world, j).await;
        assert_eq!(m.provider, "aliyun");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for j in &jobs {
        assert_eq!(world.messages(j).len(), 1, "once");
        assert_eq!(world.sends(j, "aliyun").len(), 1, "no repeat at the second");
    }
    // Five refused connections in a row open the primary's breaker.
    assert!(
        app.wait_metric(r#"sms_provider_breaker_state{provider="ccp""#, 1.0, SECS(2))
            .await
    );
    assert!(
        app.wait_metric(
            r#"sms_provider_jobs_total{outcome="sent",provider="aliyun""#,
            8.0,
            SECS(2)
        )
        .await
    );
    app.stop().await;
}

#[tokio::test]
async fn a_primary_that_accepts_then_times_out_is_asked_again_and_no_second_provider_is_used() {
    let world = World::new().await;
    // Each primary takes the message, then its answer is lost (the client gives up after 1 s).
    for (order, primary) in [
        ("ccp,aliyun", "ccp"),
        ("aliyun,tencent", "aliyun"),
        ("tencent,ccp", "tencent"),
    ] {
        let app = spawn_app_with(&world, Options::env(&[("SMS_PROVIDERS", order)])).await;
        world
            .sandbox
            .inject(Fault::delay_after_accept(1, SECS(3)).on(primary));
        let j = job();
        world.push(&j).await;
        assert!(
            app.wait_metric(
                &format!(r#"sms_provider_jobs_total{{outcome="sent",provider="{primary}""#),
                1.0,
                SECS(15)
            )
            .await,
            "{primary}: {:?}",
            world.sandbox.calls()
        );
        // Wait for the hung call to be answered too, then count.
        assert!(
            eventually(SECS(5), || world
                .calls(&j)
                .iter()
                .all(|c| c.http_status.is_some()))
            .await
        );
        let messages = world.messages(&j);
        assert_eq!(messages.len(), 1, "{primary}: one message");
        assert_eq!(messages[0].provider, primary);
        let others: Vec<_> = world
            .calls(&j)
            .into_iter()
            .filter(|c| c.provider != primary)
            .collect();
        assert!(
            others.is_empty(),
            "{primary}: no second provider: {others:?}"
        );
        let sends = world.sends(&j, primary);
        match primary {
            // CCP is simply sent again: its reqId de-duplication answers 160054.
            "ccp" => assert_eq!(
                sends
                    .iter()
                    .map(|c| c.status_code.as_deref())
                    .collect::<Vec<_>>(),
                [Some("000000"), Some("160054")]
            ),
            // Aliyun and Tencent are asked (QuerySendDetails, the receipts), never sent again.
            _ => assert_eq!(sends.len(), 1, "{primary}: {sends:?}"),
        }
        world.sandbox.reset();
        app.stop().await;
    }
}

/// Push one job and return the provider that delivered it.
async fn carrier(world: &World) -> String {
    let j = job();
    world.push(&j).await;
    delivered(world, &j).await.provider
}

async fn breaker(app: &TestApp) -> Option<f64> {
    app.metric(r#"sms_provider_breaker_state{provider="ccp""#)
        .await
}

#[tokio::test]
async fn the_breaker_opens_after_n_failures_half_opens_after_the_cooldown_and_closes() {
    let world = World::new().await;
    let app = spawn_app_with(
        &world,
        Options::env(&[
            ("SMS_PROVIDERS", "ccp,aliyun"),
            ("SMS_BREAKER_FAILURES", "2"),
            ("SMS_BREAKER_COOLDOWN_MS", "1500"),
        ]),
    )
    .await;
    world.sandbox.inject(Fault::http_status(2, 503).on("ccp"));
    assert_eq!(carrier(&world).await, "aliyun", "503, failed over");
    assert_eq!(breaker(&app).await, Some(0.0), "one failure: still closed");
    assert_eq!(carrier(&world).await, "aliyun");
    assert_eq!(breaker(&app).await, Some(1.0), "two in a row: open");
    let ccp_calls = world.provider_calls("ccp").len();
    assert_eq!(
        carrier(&world).await,
        "aliyun",
        "open: the primary is skipped"
    );
    assert_eq!(
        world.provider_calls("ccp").len(),
        ccp_calls,
        "not even tried"
    );

    // After the cool-down one job probes the primary; it hangs a moment, so the half-open
    // state can be seen, then succeeds and closes the breaker.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    world
        .sandbox
        .inject(Fault::delay(1, Duration::from_millis(700)).on("ccp"));
    let probe = job();
    world.push(&probe).await;
    assert!(
        app.wait_metric(r#"sms_provider_breaker_state{provider="ccp""#, 2.0, SECS(5))
            .await,
        "half-open while the probe runs"
    );
    assert_eq!(delivered(&world, &probe).await.provider, "ccp");
    assert_eq!(breaker(&app).await, Some(0.0), "closed again");
    assert_eq!(carrier(&world).await, "ccp");
    app.stop().await;
}

/// `rl:sms_mobile:{mobile}` as verifications-svc left it: `count` sends today.
fn set_quota(world: &World, j: &SendSmsCode, count: u32) {
    let mut conn = world
        .verify
        .client()
        .get_connection()
        .expect("verify Redis");
    let key = shared::keys::rate_limit(shared::keys::SMS_MOBILE_SCOPE, j.mobile.as_str());
    redis::cmd("SET")
        .arg(&key)
        .arg(count)
        .arg("EX")
        .arg(86_400)
        .query::<()>(&mut conn)
        .expect("SET");
}

fn quota(world: &World, j: &SendSmsCode) -> Option<u32> {
    let mut conn = world
        .verify
        .client()
        .get_connection()
        .expect("verify Redis");
    redis::cmd("GET")
        .arg(shared::keys::rate_limit(
            shared::keys::SMS_MOBILE_SCOPE,
            j.mobile.as_str(),
        ))
        .query(&mut conn)
        .expect("GET")
}

#[tokio::test]
async fn a_refusal_of_the_number_is_not_tried_elsewhere_and_one_of_the_account_is() {
    let world = World::new().await;
    let app = spawn_app_with(&world, Options::env(&[("SMS_PROVIDERS", "ccp,aliyun")])).await;

    // 160034: the number is blacklisted. Another provider would only get round that.
    world.sandbox.inject(Fault::status_code(1, "160034"));
    let blacklisted = job();
    set_quota(&world, &blacklisted, 3);
    world.push(&blacklisted).await;
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="permanent""#, 1.0, SECS(10))
            .await
    );
    assert_eq!(world.sends(&blacklisted, "ccp").len(), 1);
    assert!(
        world.sends(&blacklisted, "aliyun").is_empty(),
        "not tried elsewhere"
    );
    assert!(world.messages(&blacklisted).is_empty());
    assert_eq!(
        quota(&world, &blacklisted),
        Some(2),
        "never served: the hit is given back"
    );

    // 111142: our CCP balance is empty. Aliyun delivers it, at once.
    world.sandbox.inject(Fault::status_code(1, "111142"));
    let broke = job();
    set_quota(&world, &broke, 3);
    world.push(&broke).await;
    assert_eq!(delivered(&world, &broke).await.provider, "aliyun");
    assert_eq!(world.messages(&broke).len(), 1);
    assert_eq!(quota(&world, &broke), Some(3), "served: the hit stays");

    // The same split at Aliyun: a number over its flow control, and a bad signature name.
    let app2 = spawn_app_with(&world, Options::env(&[("SMS_PROVIDERS", "aliyun,tencent")])).await;
    app.stop().await;
    world
        .sandbox
        .inject(Fault::status_code(1, "isv.BUSINESS_LIMIT_CONTROL").on("aliyun"));
    let limited = job();
    world.push(&limited).await;
    assert!(
        app2.wait_metric(r#"sms_jobs_total{outcome="permanent""#, 1.0, SECS(10))
            .await
    );
    assert!(world.sends(&limited, "tencent").is_empty());
    world
        .sandbox
        .inject(Fault::status_code(1, "isv.SMS_SIGNATURE_ILLEGAL").on("aliyun"));
    let unsigned = job();
    world.push(&unsigned).await;
    assert_eq!(delivered(&world, &unsigned).await.provider, "tencent");
    app2.stop().await;
}

#[tokio::test]
async fn a_job_no_provider_could_deliver_gives_the_daily_quota_hit_back_once() {
    let world = World::new().await;
    let app = spawn_app_with(
        &world,
        Options::env(&[("SMS_PROVIDERS", "ccp,aliyun"), ("SMS_MAX_ATTEMPTS", "4")]),
    )
    .await;
    world.sandbox.inject(Fault::http_status(10, 503));
    let j = job();
    set_quota(&world, &j, 5);
    world.push(&j).await;
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="exhausted""#, 1.0, SECS(15))
            .await
    );
    assert_eq!(
        world.sends(&j, "ccp").len() + world.sends(&j, "aliyun").len(),
        4
    );
    assert_eq!(quota(&world, &j), Some(4));
    assert!(
        app.wait_metric("sms_quota_refunds_total", 1.0, SECS(2))
            .await
    );

    // Redelivered (no attempts left): exhausted again, but the hit is not given back twice.
    world.push(&j).await;
    assert!(
        app.wait_metric(r#"sms_jobs_total{outcome="exhausted""#, 2.0, SECS(10))
            .await
    );
    assert_eq!(quota(&world, &j), Some(4));
    app.stop().await;
}

#[tokio::test]
async fn a_sigkilled_worker_mid_call_to_aliyun_is_resolved_by_asking_aliyun_not_by_resending() {
    let world = World::new().await;
    // Aliyun takes the message, then its answer hangs 20 s; worker A would wait 30 s, so it is
    // killed mid-call holding the job. Aliyun does not de-duplicate: only asking it stops a
    // second SMS.
    world
        .sandbox
        .inject(Fault::delay_after_accept(1, SECS(20)).on("aliyun"));
    let options = Options::env(&[
        ("SMS_PROVIDERS", "aliyun,ccp"),
        ("ALIYUN_TIMEOUT_MS", "30000"),
    ]);
    let mut a = WorkerProcess::start(&world, options.clone());
    let j = job();
    world.push(&j).await;
    assert!(
        eventually(SECS(10), || world.messages(&j).len() == 1).await,
        "{}",
        a.output()
    );
    a.child.kill().expect("SIGKILL");
    a.child.wait().expect("reaped");

    let b = WorkerProcess::start(&world, options);
    assert!(
        eventually(SECS(30), || world
            .provider_calls("aliyun")
            .iter()
            .filter(|c| c.req_id.is_none())
            .count()
            >= 1)
        .await,
        "B never asked Aliyun:\n{}",
        b.output()
    );
    tokio::time::sleep(SECS(1)).await;
    assert_eq!(world.messages(&j).len(), 1);
    assert_eq!(world.sends(&j, "aliyun").len(), 1, "no second SendSms");
    assert!(world.sends(&j, "ccp").is_empty(), "no second provider");
    assert!(
        b.output()
            .contains("the provider has the message: it was sent"),
        "{}",
        b.output()
    );
}
