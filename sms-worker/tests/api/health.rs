//! `/healthz`, `/readyz`, `/metrics` and the framework's error bodies.

use serde_json::{Value, json};

use crate::helpers::{Options, World, spawn_app, spawn_app_with};

#[tokio::test]
async fn readyz_is_200_with_both_redis_databases_and_503_naming_the_one_that_is_down() {
    let world = World::new().await;
    let app = spawn_app(&world).await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.expect("JSON"),
        json!({"status": "ready"})
    );

    // Port 1 on loopback refuses connections: the verify-codes Redis is "down".
    let app = spawn_app_with(
        &world,
        Options {
            redis_url: Some("redis://127.0.0.1:1/2".to_owned()),
            ..Options::default()
        },
    )
    .await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(body["status"], "unavailable");
    let failed = body["failed"].as_object().expect("failed map");
    assert_eq!(
        failed.keys().collect::<Vec<_>>(),
        ["verify_redis"],
        "{body}"
    );
}

#[tokio::test]
async fn metrics_expose_jobs_latency_retries_and_queue_depth() {
    let world = World::new().await;
    world.push(&crate::helpers::job()).await;
    world.push(&crate::helpers::job()).await;
    let app = spawn_app_with(&world, Options::env(&[("SMS_PROVIDER", "log")])).await;
    let text = app.get("/metrics").await.text().await.expect("text");
    for name in [
        "# TYPE sms_queue_depth gauge",
        "# TYPE sms_retries_total counter",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(
        app.wait_metric(
            r#"sms_jobs_total{outcome="sent""#,
            2.0,
            std::time::Duration::from_secs(10)
        )
        .await
    );
    let text = app.get("/metrics").await.text().await.expect("text");
    assert!(
        text.contains("# TYPE sms_provider_request_duration_seconds histogram"),
        "{text}"
    );
    for state in ["active", "scheduled"] {
        assert_eq!(
            app.metric(&format!(r#"sms_queue_depth{{state="{state}""#))
                .await,
            Some(0.0),
            "{state}"
        );
    }
    assert_eq!(
        app.metric(r#"sms_provider_request_duration_seconds_count{provider="log",result="sent""#)
            .await,
        Some(2.0)
    );
}

#[tokio::test]
async fn healthz_unknown_routes_and_wrong_methods_answer_json() {
    let world = World::new().await;
    let app = spawn_app(&world).await;
    harness::service::assert_health_and_framework_errors(&app.http, &app.address).await;
}
