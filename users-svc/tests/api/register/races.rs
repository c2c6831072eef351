//! `POST /users/` under concurrency: one account per username or mobile however many race, the loser of the INSERT gets the field error, and hashing admission.

use super::*;

/// At the production cost: the nineteen that lose wait for the one in flight instead of
/// hashing, so none is refused for want of a hashing slot (it used to be 2 × 503 a round).
#[tokio::test]
async fn twenty_concurrent_registrations_of_one_username_create_exactly_one_account() {
    let app = spawn_app_with(Options::env(&[("BCRYPT_COST", "12")])).await;
    let bodies: Vec<Value> = (0..20)
        .map(|i| {
            let mobile = format!("1390000{i:04}");
            app.store_sms_code(&mobile, CODE);
            registration("samename1", &mobile, CODE)
        })
        .collect();
    let results = register_concurrently(&app, &bodies).await;
    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{results:?}");
    let losers: Vec<&(u16, Value)> = results.iter().filter(|(s, _)| *s != 201).collect();
    assert_eq!(losers.len(), 19);
    for (status, body) in losers {
        assert_eq!(
            (*status, body),
            (400, &json!({"username": ["已存在一位使用该名字的用户。"]}))
        );
    }
    assert_eq!(app.user_count(), 1);
    let winner = created[0]["mobile"].as_str().expect("mobile");
    assert_eq!(app.redis_get(&format!("sms_{winner}")), None);
    assert_eq!(
        app.db.scalar("SELECT mobile FROM tb_users").as_deref(),
        Some(winner)
    );
}

/// Admission follows the expected wait, not a count: forty registrations at once at the
/// production cost all get in when the wait they face is allowed (the old fixed queue of
/// 8 × cores refused 22 of them), and every one is created.
#[tokio::test]
async fn forty_concurrent_distinct_registrations_at_cost_12_are_all_created() {
    let app = spawn_app_with(Options::env(&[
        ("BCRYPT_COST", "12"),
        ("HASH_MAX_WAIT_MS", "120000"),
    ]))
    .await;
    let bodies: Vec<Value> = (0..40)
        .map(|i| {
            let mobile = format!("1370000{i:04}");
            app.store_sms_code(&mobile, CODE);
            registration(&format!("forty{i:04}"), &mobile, CODE)
        })
        .collect();
    // Forty hashes of a quarter second each on two cores can outlast the usual 30 s client
    // timeout on a busy machine; the service itself bounds nothing here but the admission.
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client");
    let results = futures::future::join_all(bodies.iter().map(|b| {
        let request = patient
            .post(format!("{}/users/", app.address))
            .json(b)
            .send();
        async { status_and_json(request.await.expect("request sent")).await }
    }))
    .await;
    for (body, (status, answer)) in bodies.iter().zip(&results) {
        let username = body["username"].as_str().expect("username");
        let id: i64 = row(&app, username)[0].parse().expect("id");
        let token = answer["token"].as_str().unwrap_or_default();
        assert_eq!(
            (*status, answer),
            (
                201,
                &json!({"id": id, "username": username, "mobile": body["mobile"], "token": token})
            )
        );
    }
    assert_eq!(app.user_count(), 40);
}

#[tokio::test]
async fn twenty_concurrent_registrations_of_one_mobile_create_exactly_one_account() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    let bodies: Vec<Value> = (0..20)
        .map(|i| registration(&format!("user{i:04}"), MOBILE, CODE))
        .collect();
    let results = register_concurrently(&app, &bodies).await;
    assert_one_created(
        &results,
        &json!({"mobile": ["具有 手机号 的 用户 已存在。"]}),
    );
    assert_eq!(app.user_count(), 1);
    assert_eq!(app.redis_get(&format!("sms_{MOBILE}")), None);
}

#[tokio::test]
async fn losing_the_race_at_the_insert_is_the_same_400_not_a_5xx() {
    // Cost 14 makes the hash take long enough (~1 s) to slip a row in between the
    // availability pre-check and the INSERT.
    let app = spawn_app_with(Options::env(&[("BCRYPT_COST", "14")])).await;
    app.store_sms_code(MOBILE, CODE);
    let body = registration("racer123", MOBILE, CODE);
    let request = app.register(&body);
    let sneak = async {
        // The hash has started, so the availability pre-check has passed: slip the row in now.
        wait_for_metric(&app, r#"users_hash_in_progress{service="users-svc"} 1"#).await;
        app.insert_user("RACER123", "13900139000");
    };
    let (res, ()) = tokio::join!(request, sneak);
    let (status, got) = status_and_json(res).await;
    assert_eq!(
        (status, got),
        (400, json!({"username": ["已存在一位使用该名字的用户。"]}))
    );
    // A hash ran, so the availability pre-check had passed: the unique index decided.
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains(r#"users_password_hash_seconds_count{service="users-svc"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"users_registrations_total{outcome="taken",service="users-svc"} 1"#),
        "{metrics}"
    );

    assert_eq!(app.user_count(), 1);
    assert_eq!(
        app.redis_get(&format!("sms_{MOBILE}")).as_deref(),
        Some(CODE),
        "a failed registration leaves the code"
    );
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_at_once() {
    let app = spawn_app_with(Options::env(&[
        ("BCRYPT_COST", "14"),
        ("HASH_CONCURRENCY", "1"),
        ("HASH_MAX_WAIT_MS", "0"),
    ]))
    .await;
    app.store_sms_code(MOBILE, CODE);
    app.store_sms_code("13900139000", CODE);
    let started = Instant::now();
    let body = registration("first123", MOBILE, CODE);
    let first = async {
        let res = app.register(&body).await;
        (res, started.elapsed())
    };
    let second = async {
        // Wait until the first one holds the only hashing slot.
        wait_for_metric(&app, r#"users_hash_in_progress{service="users-svc"} 1"#).await;
        let res = app
            .register(&registration("second12", "13900139000", CODE))
            .await;
        (res, started.elapsed())
    };
    let ((first, first_done), (second, second_done)) = tokio::join!(first, second);
    assert_eq!(second.headers()["retry-after"], "5");
    let (status, body) = status_and_json(second).await;
    assert_eq!(
        (status, body),
        (503, json!({"detail": "服务暂时不可用，请稍后重试"}))
    );
    // Refused at once: the answer came while the first hash was still running, not after it.
    assert!(
        second_done < first_done,
        "second answered at {second_done:?}, first at {first_done:?}"
    );
    assert_eq!(first.status(), 201);
    assert_eq!(app.redis_get("sms_13900139000").as_deref(), Some(CODE));
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    for line in [
        r#"users_registrations_total{outcome="busy",service="users-svc"} 1"#,
        r#"users_registrations_total{outcome="created",service="users-svc"} 1"#,
        r#"users_hash_queue_depth{service="users-svc"} 0"#,
        r#"users_hash_in_progress{service="users-svc"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_request_over_max_in_flight_is_shed_at_once_and_probes_still_answer() {
    let app = spawn_app_with(Options::env(&[
        ("BCRYPT_COST", "14"),
        ("MAX_IN_FLIGHT", "1"),
    ]))
    .await;
    app.store_sms_code(MOBILE, CODE);
    let body = registration("first123", MOBILE, CODE);
    let first = app.register(&body);
    let during = async {
        // The registration holds the only slot while its hash runs.
        wait_for_metric(&app, r#"users_hash_in_progress{service="users-svc"} 1"#).await;
        let shed = app.get("/usernames/someone1/count/").await;
        let probe = app.get("/healthz").await.status();
        (shed, probe)
    };
    let (first, (shed, probe)) = tokio::join!(first, during);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(
        status_and_json(shed).await,
        (503, json!({"detail": "服务暂时不可用，请稍后重试"}))
    );
    assert_eq!(probe, 200, "probes are never shed");
    assert_eq!(first.status(), 201);
    // The slot came back with the answer.
    assert_eq!(
        status_and_json(app.get("/usernames/someone1/count/").await).await,
        (200, json!({"username": "someone1", "count": 0}))
    );
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    let line = r#"http_requests_shed_total{service="users-svc"} 1"#;
    assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
}
