//! `POST /users/`: the SMS code check: missing, wrong, counted, deleted after five wrong guesses, compared in constant time and at most five times however many guesses are in flight.

use super::*;

#[tokio::test]
async fn a_missing_code_is_invalid_and_a_wrong_one_is_counted() {
    let app = spawn_app().await;
    let (status, got) =
        status_and_json(app.register(&registration("alice123", MOBILE, CODE)).await).await;
    assert_eq!(
        (status, got),
        (400, json!({"non_field_errors": ["无效的短信验证码"]}))
    );

    app.store_sms_code(MOBILE, CODE);
    let (status, got) = status_and_json(
        app.register(&registration("alice123", MOBILE, "654321"))
            .await,
    )
    .await;
    assert_eq!(
        (status, got),
        (400, json!({"non_field_errors": ["短信验证码错误"]}))
    );
    assert_eq!(
        app.redis_get(&format!("sms_attempts_{MOBILE}")).as_deref(),
        Some("1")
    );
    let ttl = app.redis_ttl(&format!("sms_attempts_{MOBILE}"));
    assert!((1..=300).contains(&ttl), "{ttl}");
    assert_eq!(
        app.redis_get(&format!("sms_{MOBILE}")).as_deref(),
        Some(CODE)
    );

    // Four wrong guesses in all still leave the right code usable.
    for _ in 0..3 {
        let (status, _) = status_and_json(
            app.register(&registration("alice123", MOBILE, "000000"))
                .await,
        )
        .await;
        assert_eq!(status, 400);
    }
    assert_eq!(
        app.redis_get(&format!("sms_attempts_{MOBILE}")).as_deref(),
        Some("4")
    );
    let res = app.register(&registration("alice123", MOBILE, CODE)).await;
    assert_registered(&app, res, "alice123", MOBILE, "password123").await;
}

#[tokio::test]
async fn five_wrong_codes_delete_it_so_even_the_right_one_is_then_invalid() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    for attempt in 1..=5 {
        let (status, got) = status_and_json(
            app.register(&registration("alice123", MOBILE, "999999"))
                .await,
        )
        .await;
        assert_eq!(
            (status, got),
            (400, json!({"non_field_errors": ["短信验证码错误"]})),
            "attempt {attempt}"
        );
        let stored = app.redis_get(&format!("sms_{MOBILE}"));
        assert_eq!(stored.is_some(), attempt < 5, "after attempt {attempt}");
    }
    let (status, got) =
        status_and_json(app.register(&registration("alice123", MOBILE, CODE)).await).await;
    assert_eq!(
        (status, got),
        (400, json!({"non_field_errors": ["无效的短信验证码"]}))
    );
    assert_eq!(app.user_count(), 0);
}

#[tokio::test]
async fn forty_concurrent_wrong_codes_get_at_most_five_comparisons() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    // 40 different wrong codes, none of them the stored one, sent at the same instant.
    let bodies: Vec<Value> = (0..40)
        .map(|i| registration("alice123", MOBILE, &format!("{:06}", 900_000 + i)))
        .collect();
    let results = register_concurrently(&app, &bodies).await;
    let wrong = (400, json!({"non_field_errors": ["短信验证码错误"]}));
    let invalid = (400, json!({"non_field_errors": ["无效的短信验证码"]}));
    let wrongs = results.iter().filter(|r| **r == wrong).count();
    assert!(wrongs <= 5, "{wrongs} guesses were compared: {results:?}");
    // Every request reached the check (none was refused earlier), so exactly five were
    // compared and every other one found the code already deleted.
    assert_eq!(wrongs, 5, "{results:?}");
    for r in results.iter().filter(|r| **r != wrong) {
        assert_eq!(r, &invalid);
    }
    assert_eq!(app.redis_get(&format!("sms_{MOBILE}")), None);
    assert_eq!(
        app.redis_get(&format!("sms_attempts_{MOBILE}")).as_deref(),
        Some("5"),
        "only compared guesses are counted"
    );
    let (status, got) =
        status_and_json(app.register(&registration("alice123", MOBILE, CODE)).await).await;
    assert_eq!((status, got), invalid);
    assert_eq!(app.user_count(), 0);
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    for line in [
        r#"users_registrations_total{outcome="sms_code_wrong",service="users-svc"} 5"#,
        r#"users_registrations_total{outcome="sms_code_invalid",service="users-svc"} 36"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_code_that_differs_in_length_or_in_any_one_byte_is_wrong() {
    let app = spawn_app().await;
    let cases = [
        ("a prefix of the code", "12345"),
        ("the code and one more digit", "1234567"),
        ("the code twice", "123456123456"),
        ("first byte differs", "023456"),
        ("last byte differs", "123457"),
        ("one byte", "1"),
        ("multi-byte characters of the same byte length", "１２"),
        (
            "a NUL-free long guess",
            "1234560000000000000000000000000000000000",
        ),
    ];
    for (why, guess) in cases {
        app.store_sms_code(MOBILE, CODE);
        let (status, got) =
            status_and_json(app.register(&registration("alice123", MOBILE, guess)).await).await;
        assert_eq!(
            (status, got),
            (400, json!({"non_field_errors": ["短信验证码错误"]})),
            "{why}"
        );
        assert_eq!(
            app.redis_get(&format!("sms_attempts_{MOBILE}")).as_deref(),
            Some("1"),
            "{why}: counted once"
        );
        assert_eq!(
            app.redis_get(&format!("sms_{MOBILE}")).as_deref(),
            Some(CODE),
            "{why}: the code stays"
        );
        redis::cmd("DEL")
            .arg(format!("sms_attempts_{MOBILE}"))
            .query::<()>(&mut app.redis_conn())
            .expect("DEL");
    }
    assert_eq!(app.user_count(), 0);
}
