//! `GET /mobiles/{mobile}/count/`.

use serde_json::json;

use crate::helpers::{spawn_app, status_and_json};

#[tokio::test]
async fn a_free_mobile_counts_0_and_a_taken_one_1() {
    let app = spawn_app().await;
    let (status, body) = status_and_json(app.get("/mobiles/13800138000/count/").await).await;
    assert_eq!(
        (status, body),
        (200, json!({"mobile": "13800138000", "count": 0}))
    );
    app.insert_user("alice123", "13800138000");
    let (status, body) = status_and_json(app.get("/mobiles/13800138000/count/").await).await;
    assert_eq!(
        (status, body),
        (200, json!({"mobile": "13800138000", "count": 1}))
    );
    let (status, body) = status_and_json(app.get("/mobiles/13800138001/count/").await).await;
    assert_eq!(
        (status, body),
        (200, json!({"mobile": "13800138001", "count": 0}))
    );
    assert_eq!(app.redis_get("rl:count_ip:127.0.0.1").as_deref(), Some("3"));
}

#[tokio::test]
async fn mobiles_outside_the_pattern_are_404_json() {
    let app = spawn_app().await;
    let cases = [
        ("ten digits", "1380013800"),
        ("twelve digits", "138001380000"),
        ("second digit 2", "12800138000"),
        ("not starting with 1", "23800138000"),
        ("a letter", "1380013800a"),
        (
            "full-width digits",
            "%EF%BC%91%EF%BC%93%EF%BC%98%EF%BC%90%EF%BC%90%EF%BC%91%EF%BC%93%EF%BC%98%EF%BC%90%EF%BC%90%EF%BC%90",
        ),
        ("country code", "%2B8613800138000"),
        ("4-byte characters", "%F0%A0%80%80%F0%A0%80%80"),
    ];
    for (why, mobile) in cases {
        let (status, body) =
            status_and_json(app.get(&format!("/mobiles/{mobile}/count/")).await).await;
        assert_eq!(
            (status, body),
            (404, json!({"detail": "Not found."})),
            "{why}"
        );
    }
}
