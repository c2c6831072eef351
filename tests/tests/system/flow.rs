//! The registration flow across all services, through the gateway: captcha (verifications-svc,
//! Redis) → SMS code (verifications-svc → queue → sms-worker → provider sandbox) → registration
//! (users-svc, Redis, MariaDB) → the counts; and the per-IP limits, which only work end to end if
//! nginx passes the client address the way the services trust it.

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine;
use serde_json::{Value, json};

use crate::stack::{Options, Reply, Stack, http_client_from, random_mobile, random_username};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_registers_through_the_gateway_with_the_code_from_the_sms_inbox() {
    let stack = Stack::start().await;
    let client = harness::http_client();
    let username = random_username();
    let mobile = random_mobile();

    // Both names are free before.
    let count = Reply::of(client.get(stack.url(&format!("/usernames/{username}/count/")))).await;
    assert_eq!(
        (count.status, count.json()),
        (200, json!({"username": username, "count": 0}))
    );
    let count = Reply::of(client.get(stack.url(&format!("/mobiles/{mobile}/count/")))).await;
    assert_eq!(
        (count.status, count.json()),
        (200, json!({"mobile": mobile, "count": 0}))
    );

    // Captcha: an image, its text in Redis; the text typed in lower case still matches.
    let (image_code_id, text) = stack.captcha().await;
    assert_eq!(text.chars().count(), 4, "a 4-character captcha: {text:?}");
    let sent = stack
        .send_sms(&client, &mobile, &image_code_id, &text.to_lowercase())
        .await;
    assert_eq!((sent.status, sent.json()), (200, json!({"message": "OK"})));
    assert!(
        !stack.redis_exists(&format!("img_{image_code_id}")).await,
        "the captcha is consumed by the check"
    );

    // The worker delivered exactly one SMS with the code and its lifetime in minutes.
    let code = stack.sms_code_from_inbox(&mobile).await;
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "a 6-digit code: {code:?}"
    );
    let inbox = stack.inbox(&mobile);
    assert_eq!(inbox.len(), 1, "one message: {inbox:?}");
    assert_eq!(inbox[0].datas, vec![code.clone(), "5".to_owned()]);

    // Within 60 s the same mobile gets no second code, even with a right captcha; a wrong
    // captcha is refused first.
    let (id, _) = stack.captcha().await;
    let reply = stack.send_sms(&client, &mobile, &id, "zzzz").await;
    assert_eq!(
        (reply.status, reply.json()),
        (400, json!({"non_field_errors": ["图片验证码错误"]}))
    );
    let (id, text) = stack.captcha().await;
    let reply = stack.send_sms(&client, &mobile, &id, &text).await;
    assert_eq!(
        (reply.status, reply.json()),
        (400, json!({"non_field_errors": ["请求次数过于频繁"]}))
    );

    // The code verifications-svc stored is the one users-svc checks: mismatched passwords and a
    // wrong code are refused, and the code survives a wrong guess.
    let password = "e2e-pass-1234";
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    let mut body = json!({"username": username, "password": password, "password2": "other-pass-1",
                          "sms_code": code, "mobile": mobile, "allow": "true"});
    let reply = Reply::of(client.post(stack.url("/users/")).json(&body)).await;
    assert_eq!(
        (reply.status, reply.json()),
        (400, json!({"non_field_errors": ["两次密码不一致"]}))
    );
    body["password2"] = json!(password);
    body["sms_code"] = json!(wrong_code);
    let reply = Reply::of(client.post(stack.url("/users/")).json(&body)).await;
    assert_eq!(
        (reply.status, reply.json()),
        (400, json!({"non_field_errors": ["短信验证码错误"]}))
    );
    // The form-encoded body the original also accepts reaches users-svc intact through nginx.
    let reply = Reply::of(
        client
            .post(stack.url("/users/"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!(
                "username={username}&password={password}&password2={password}&sms_code={wrong_code}&mobile={mobile}&allow=true"
            )),
    )
    .await;
    assert_eq!(
        (reply.status, reply.json()),
        (400, json!({"non_field_errors": ["短信验证码错误"]}))
    );
    assert_eq!(stack.inbox(&mobile).len(), 1, "still one message");

    // Register with the code from the inbox.
    let reply = stack.register(&username, password, &mobile, &code).await;
    assert_eq!(reply.status, 201, "register: {}", reply.json());
    assert_eq!(reply.content_type, "application/json");
    let body = reply.json();
    let keys: Vec<&str> = body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 4, "exactly id, username, mobile, token: {body}");
    let id = body["id"].as_u64().expect("a numeric id");
    assert_eq!(body["username"], json!(username));
    assert_eq!(body["mobile"], json!(mobile));
    let claims = jwt_claims(body["token"].as_str().expect("a token string"));
    assert_eq!(claims["user_id"], json!(id));
    assert_eq!(claims["username"], json!(username));

    // The row: the right names, a Django bcrypt_sha256 hash, never the password.
    let row = stack.database.query(&format!(
        "SELECT id, username, mobile, password FROM tb_users WHERE id = {id}"
    ));
    assert_eq!(row.len(), 1, "one row for id {id}");
    assert_eq!(row[0][1], username);
    assert_eq!(row[0][2], mobile);
    assert!(
        row[0][3].starts_with("bcrypt_sha256$"),
        "hash: {}",
        row[0][3]
    );
    assert!(!row[0][3].contains(password));

    // The code is single use, and both names now count 1 (the username case-insensitively).
    assert!(!stack.redis_exists(&format!("sms_{mobile}")).await);
    let count =
        Reply::of(client.get(stack.url(&format!("/usernames/{}/count/", username.to_uppercase()))))
            .await;
    assert_eq!(count.json()["count"], json!(1));
    let count = Reply::of(client.get(stack.url(&format!("/mobiles/{mobile}/count/")))).await;
    assert_eq!(
        (count.status, count.json()),
        (200, json!({"mobile": mobile, "count": 1}))
    );

    // The used code is gone: a new user with a fresh mobile but this code is refused.
    let reply = stack
        .register(&random_username(), password, &random_mobile(), &code)
        .await;
    assert_eq!(
        (reply.status, reply.json()),
        (400, json!({"non_field_errors": ["无效的短信验证码"]}))
    );

    // Registering again with the same (now used) code and names is refused with field errors.
    let again = stack.register(&username, password, &mobile, &code).await;
    assert_eq!(again.status, 400);
    assert_eq!(
        again.json(),
        json!({"username": ["已存在一位使用该名字的用户。"], "mobile": ["具有 手机号 的 用户 已存在。"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limits_count_the_address_nginx_saw_and_ignore_a_forged_forwarded_for() {
    let stack = Stack::start_with(
        Options::default()
            .env("SMS_SEND_LIMIT_PER_IP_PER_HOUR", "2")
            .env("COUNT_LIMIT_PER_IP_PER_MINUTE", "3"),
    )
    .await;
    let alice = http_client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let bob = http_client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));

    // Alice sends to two mobiles, each time claiming to be someone else: allowed twice.
    for (i, forged) in ["203.0.113.1", "203.0.113.2"].iter().enumerate() {
        let (id, text) = stack.captcha().await;
        let mobile = random_mobile();
        let reply = Reply::of(
            alice
                .get(stack.url(&format!(
                    "/sms_codes/{mobile}/?image_code_id={id}&text={text}"
                )))
                .header("X-Forwarded-For", *forged),
        )
        .await;
        assert_eq!(
            (reply.status, reply.json()),
            (200, json!({"message": "OK"})),
            "send {i}"
        );
    }
    // The third is over her hourly limit, whatever she claims.
    let (id, text) = stack.captcha().await;
    let third = random_mobile();
    let reply = Reply::of(
        alice
            .get(stack.url(&format!(
                "/sms_codes/{third}/?image_code_id={id}&text={text}"
            )))
            .header("X-Forwarded-For", "203.0.113.3"),
    )
    .await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(
        reply.json(),
        json!({"detail": "请求次数过于频繁，请稍后再试"})
    );
    let retry_after: u64 = reply
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("429 carries Retry-After in seconds");
    assert!(
        (1..=3600).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    // Refused means not sent.
    assert!(!stack.redis_exists(&format!("sms_{third}")).await);

    // Bob, another address, is not affected.
    let (id, text) = stack.captcha().await;
    let reply = stack.send_sms(&bob, &third, &id, &text).await;
    assert_eq!(
        (reply.status, reply.json()),
        (200, json!({"message": "OK"}))
    );

    // Count lookups: three a minute for Alice, then 429; Bob still gets answers.
    let mobile = random_mobile();
    for i in 0..3 {
        let reply = Reply::of(alice.get(stack.url(&format!("/mobiles/{mobile}/count/")))).await;
        assert_eq!(reply.status, 200, "lookup {i}: {}", reply.json());
    }
    let reply = Reply::of(
        alice
            .get(stack.url(&format!("/usernames/{}/count/", random_username())))
            .header("X-Forwarded-For", "198.51.100.9"),
    )
    .await;
    assert_eq!(
        (reply.status, reply.json()),
        (429, json!({"detail": "请求次数过于频繁，请稍后再试"}))
    );
    assert!(reply.header("retry-after").is_some());
    let reply = Reply::of(bob.get(stack.url(&format!("/mobiles/{mobile}/count/")))).await;
    assert_eq!(
        (reply.status, reply.json()),
        (200, json!({"mobile": mobile, "count": 0}))
    );
}

/// The claims of a JWT (not verified: users-svc's own tests check the signature).
fn jwt_claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .expect("the payload is base64url");
    serde_json::from_slice(&payload).expect("the payload is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sms_requests_for_one_mobile_deliver_exactly_one_message() {
    let stack = Stack::start().await;
    let mobile = random_mobile();
    // Ten people (or one impatient script) with ten valid captchas, at the same moment.
    let mut captchas = Vec::new();
    for _ in 0..10 {
        captchas.push(stack.captcha().await);
    }
    let client = harness::http_client();
    let mut set = tokio::task::JoinSet::new();
    for (id, text) in captchas {
        let req = client.get(stack.url(&format!(
            "/sms_codes/{mobile}/?image_code_id={id}&text={text}"
        )));
        set.spawn(Reply::of(req));
    }
    let mut ok = 0;
    while let Some(reply) = set.join_next().await {
        let reply = reply.expect("the request task finishes");
        match reply.status {
            200 => ok += 1,
            400 => assert_eq!(
                reply.json(),
                json!({"non_field_errors": ["请求次数过于频繁"]})
            ),
            other => panic!("unexpected {other}: {}", reply.json()),
        }
    }
    assert_eq!(ok, 1, "exactly one request wins the send flag");
    let code = stack.sms_code_from_inbox(&mobile).await;
    // Give a duplicate delivery time to show up, then count.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let inbox = stack.inbox(&mobile);
    assert_eq!(inbox.len(), 1, "one SMS reached the provider: {inbox:?}");
    assert_eq!(inbox[0].datas[0], code);
}
