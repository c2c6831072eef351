//! Abuse at `POST /users/`: a stranger cannot burn the owner's SMS code, brute force stays
//! bounded, wrong codes count per client across mobiles (threat model in the README), and
//! usernames are NFKC-normalised with format characters refused.

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, registration, spawn_app, spawn_app_with, status_and_json};

const MOBILE: &str = "13800138000";
const CODE: &str = "123456";
const VICTIM: &str = "198.51.100.7";
const ATTACKER: &str = "203.0.113.9";

/// `POST /users/` through the trusted local proxy, as client `ip`.
async fn register_from(app: &TestApp, ip: &str, body: &Value) -> (u16, Value) {
    let res = app
        .http
        .post(format!("{}/users/", app.address))
        .header("x-forwarded-for", ip)
        .json(body)
        .send()
        .await
        .expect("request sent");
    status_and_json(res).await
}

/// A code as verifications-svc stores it when `owner` asked for it.
fn store_code_for(app: &TestApp, mobile: &str, owner: &str) {
    app.store_sms_code(mobile, CODE);
    redis::cmd("SETEX")
        .arg(format!("sms_owner_{mobile}"))
        .arg(300)
        .arg(owner)
        .query::<()>(&mut app.redis_conn())
        .expect("SETEX");
}

fn wrong() -> Value {
    json!({"non_field_errors": ["短信验证码错误"]})
}

fn invalid() -> Value {
    json!({"non_field_errors": ["无效的短信验证码"]})
}

#[tokio::test]
async fn a_stranger_cannot_burn_the_owners_code_and_gets_three_guesses() {
    let app = spawn_app().await;
    store_code_for(&app, MOBILE, VICTIM);
    // The attacker's first three wrong guesses are compared and counted as a stranger's ...
    for n in 1..=3 {
        let got = register_from(&app, ATTACKER, &registration("mallory1", MOBILE, "000000")).await;
        assert_eq!(got, (400, wrong()), "guess {n}");
        assert_eq!(
            app.redis_get(&format!("sms_stranger_attempts_{MOBILE}")),
            Some(n.to_string())
        );
    }
    // ... then not compared at all, not even the right code, and never counted again.
    for guess in ["000001", "000002", CODE] {
        let got = register_from(&app, ATTACKER, &registration("mallory1", MOBILE, guess)).await;
        assert_eq!(got, (400, invalid()), "{guess}");
    }
    assert_eq!(
        app.redis_get(&format!("sms_stranger_attempts_{MOBILE}"))
            .as_deref(),
        Some("3")
    );
    assert_eq!(app.redis_get(&format!("sms_attempts_{MOBILE}")), None);
    assert_eq!(
        app.redis_get(&format!("sms_{MOBILE}")).as_deref(),
        Some(CODE)
    );
    assert_eq!(app.user_count(), 0);
    // The victim, from the address that asked for the code, still registers with it.
    let (status, body) = register_from(&app, VICTIM, &registration("victim01", MOBILE, CODE)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["username"], "victim01");
    assert_eq!(app.user_count(), 1);
    for key in [
        "sms_",
        "sms_owner_",
        "sms_stranger_attempts_",
        "sms_attempts_",
    ] {
        assert_eq!(
            app.redis_get(&format!("{key}{MOBILE}")),
            None,
            "{key} deleted"
        );
    }
}

#[tokio::test]
async fn the_owners_fifth_wrong_guess_still_deletes_the_code_and_its_ipv6_slash_64_is_the_owner() {
    let app = spawn_app().await;
    store_code_for(&app, MOBILE, "2001:db8:1:2::/64");
    for n in 1..=5 {
        let got = register_from(
            &app,
            "2001:db8:1:2::99",
            &registration("alice123", MOBILE, "999999"),
        )
        .await;
        assert_eq!(got, (400, wrong()), "guess {n}");
    }
    assert_eq!(app.redis_get(&format!("sms_{MOBILE}")), None);
    assert_eq!(
        app.redis_get(&format!("sms_stranger_attempts_{MOBILE}")),
        None
    );
}

#[tokio::test]
async fn a_code_without_an_owner_keeps_the_old_rule_for_everyone() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    for n in 1..=5 {
        let ip = format!("192.0.2.{n}");
        let got = register_from(&app, &ip, &registration("alice123", MOBILE, "999999")).await;
        assert_eq!(got, (400, wrong()), "guess {n}");
    }
    assert_eq!(
        app.redis_get(&format!("sms_{MOBILE}")),
        None,
        "deleted at 5"
    );
}

#[tokio::test]
async fn wrong_codes_per_client_across_mobiles_answer_429_past_the_limit() {
    let app = spawn_app_with(Options::env(&[(
        "REGISTER_WRONG_CODES_PER_IP_PER_HOUR",
        "3",
    )]))
    .await;
    for n in 0..3 {
        let mobile = format!("1390000000{n}");
        app.store_sms_code(&mobile, CODE);
        let got = register_from(&app, ATTACKER, &registration("mallory1", &mobile, "000000")).await;
        assert_eq!(got, (400, wrong()), "{mobile}");
    }
    assert_eq!(
        app.redis_get(&format!("rl:register_wrong:{ATTACKER}"))
            .as_deref(),
        Some("3")
    );
    app.store_sms_code("13900000009", CODE);
    let res = app
        .http
        .post(format!("{}/users/", app.address))
        .header("x-forwarded-for", ATTACKER)
        .json(&registration("mallory1", "13900000009", CODE))
        .send()
        .await
        .expect("sent");
    let retry = harness::service::retry_after(&res);
    assert!((3_590..=3_600).contains(&retry), "{retry}");
    let got = status_and_json(res).await;
    assert_eq!(
        got,
        (429, json!({"detail": "请求次数过于频繁，请稍后再试"})),
        "even the right code"
    );
    assert_eq!(
        app.redis_get(&format!("rl:register_wrong:{ATTACKER}"))
            .as_deref(),
        Some("3"),
        "refusals are not counted"
    );
    assert_eq!(
        app.redis_get("sms_attempts_13900000009"),
        None,
        "nothing compared"
    );
    // Another client, and right codes, are not limited.
    let (status, body) =
        register_from(&app, VICTIM, &registration("victim01", "13900000009", CODE)).await;
    assert_eq!(status, 201, "{body}");
}

/// Usernames are NFKC-normalised at the boundary (as Django's `normalize_username` does before
/// storing), and invisible format characters are refused.
#[tokio::test]
async fn usernames_are_stored_in_nfkc_and_format_characters_are_refused() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    let (status, body) =
        register_from(&app, VICTIM, &registration("ａｌｉｃｅ１", MOBILE, CODE)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["username"], "alice1");
    let res = app.get("/usernames/%EF%BD%81lice1/count/").await;
    let (status, body) = status_and_json(res).await;
    assert_eq!(
        (status, body),
        (200, json!({"username": "alice1", "count": 1})),
        "a full-width spelling finds the normal form"
    );
    app.store_sms_code("13900000001", CODE);
    let got = register_from(
        &app,
        VICTIM,
        &registration("ali\u{200d}ce2", "13900000001", CODE),
    )
    .await;
    assert_eq!(
        got,
        (400, json!({"username": ["仅允许5-20个字符的用户名"]}))
    );
}
