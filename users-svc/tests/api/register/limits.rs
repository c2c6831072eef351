//! `POST /users/` spends the count endpoints' per-IP enumeration budget before any lookup.

use super::*;

#[tokio::test]
async fn registrations_spend_the_count_endpoints_per_ip_limit_before_any_lookup() {
    let app = spawn_app_with(Options::env(&[("COUNT_LIMIT_PER_IP_PER_MINUTE", "3")])).await;
    app.insert_user("taken123", "13900139000");
    app.store_sms_code(MOBILE, CODE);
    let counter = || app.redis_get("rl:count_ip:127.0.0.1");

    // 1: a count.
    assert_eq!(app.get("/usernames/alice123/count/").await.status(), 200);
    // Not counted: no valid username or mobile, so nothing is looked up.
    let (status, _) = status_and_json(app.register(&json!({})).await).await;
    assert_eq!((status, counter().as_deref()), (400, Some("1")));
    // 2: a registration whose lookup answers "taken".
    let (status, got) = status_and_json(
        app.register(&registration("taken123", "13700137000", CODE))
            .await,
    )
    .await;
    assert_eq!(
        (status, got),
        (400, json!({"username": ["已存在一位使用该名字的用户。"]}))
    );
    // 3: a count again.
    assert_eq!(app.get("/mobiles/13900139000/count/").await.status(), 200);
    assert_eq!(counter().as_deref(), Some("3"));

    // 4 and 5: over the limit. The taken name is not revealed and the valid registration
    // (right code) creates nothing: both are refused before the lookup.
    for (why, body) in [
        ("taken name", registration("taken123", "13700137000", CODE)),
        ("valid registration", registration("alice123", MOBILE, CODE)),
    ] {
        let res = app.register(&body).await;
        let retry = harness::service::retry_after(&res);
        assert!((1..=60).contains(&retry), "{why}: {retry}");
        let text = res.text().await.expect("body");
        assert_eq!(
            text, r#"{"detail":"请求次数过于频繁，请稍后再试"}"#,
            "{why}"
        );
    }
    // The counts are refused too: one budget.
    assert_eq!(app.get("/usernames/alice123/count/").await.status(), 429);
    assert_eq!(counter().as_deref(), Some("6"));
    assert_eq!(app.user_count(), 1, "only the inserted account");
    assert_eq!(
        app.redis_get(&format!("sms_{MOBILE}")).as_deref(),
        Some(CODE)
    );
    assert_eq!(outcome_count(&app, "throttled").await, 2);
    assert_eq!(outcome_count(&app, "taken").await, 1, "no lookup after 3");
    assert_eq!(outcome_count(&app, "created").await, 0);
}
