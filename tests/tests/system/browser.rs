//! The register page in a real browser (Debian's headless chromium over WebDriver), against the
//! whole system: a person's path through the form, including a wrong captcha, a taken username
//! and a wrong SMS code, ending with a registered user. Screenshots of the filled form and of
//! the success state are saved under target/e2e-artifacts/.

use std::time::Duration;

use serde_json::{Value, json};

use crate::stack::{Options, Stack, artifacts_dir, random_mobile, random_username};
use crate::webdriver::{Browser, ChromeDriver, TAB};

/// The captcha id the page is showing: the uuid in the `<img>`'s src.
async fn shown_captcha_id(browser: &Browser) -> String {
    let src = browser.property("#image-code-img", "src").await;
    let src = src.as_str().expect("the captcha has a src");
    let id = src
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .expect("src ends with the id")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "captcha src {src}");
    id
}

/// Wait until the captcha image has loaded (its text is in Redis once it has been drawn).
async fn wait_captcha_loaded(browser: &Browser) {
    browser
        .wait_until(
            Duration::from_secs(20),
            "the captcha image to load",
            || async {
                browser
                    .execute(
                        "const i = document.getElementById('image-code-img'); \
                     return i.complete && i.naturalWidth > 0;",
                        vec![],
                    )
                    .await
                    == json!(true)
            },
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_registers_through_the_page_in_a_real_browser() {
    let stack = Stack::start().await;
    // Someone already has this username: the page must say so on blur.
    let taken = random_username();
    let other_mobile = random_mobile();
    let code = stack.sms_code_for(&other_mobile).await;
    let reply = stack
        .register(&taken, "taken-pass-1", &other_mobile, &code)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.json());

    let driver = ChromeDriver::start();
    let browser = driver.session().await;
    browser.goto(&stack.url("/")).await;
    assert_eq!(browser.text("h1").await, "用户注册");
    wait_captcha_loaded(&browser).await;

    // A taken username, checked on blur through /usernames/{u}/count/.
    browser
        .type_into("#username", &format!("{taken}{TAB}"))
        .await;
    browser
        .wait_until(
            Duration::from_secs(20),
            "the taken-username message",
            || async {
                browser.text("#username-error").await == "已存在一位使用该名字的用户。"
            },
        )
        .await;

    // A free one clears it.
    let username = random_username();
    browser.clear("#username").await;
    browser
        .type_into("#username", &format!("{username}{TAB}"))
        .await;
    browser
        .wait_until(
            Duration::from_secs(20),
            "the username message to clear",
            || async { browser.text("#username-error").await.is_empty() },
        )
        .await;

    let password = "browser-pass-1";
    browser.type_into("#password", password).await;
    browser.type_into("#password2", password).await;
    let mobile = random_mobile();
    browser
        .type_into("#mobile", &format!("{mobile}{TAB}"))
        .await;

    // A wrong captcha: the top message, and a new captcha (the old one is used up).
    let first_id = shown_captcha_id(&browser).await;
    let right = stack.captcha_text(&first_id).await;
    let wrong = if right.eq_ignore_ascii_case("AAAA") {
        "BBBB"
    } else {
        "AAAA"
    };
    browser.type_into("#image-code", wrong).await;
    browser.click("#send-sms").await;
    browser
        .wait_until(
            Duration::from_secs(20),
            "the wrong-captcha message",
            || async { browser.text("#form-error").await == "图片验证码错误" },
        )
        .await;
    let second_id = shown_captcha_id(&browser).await;
    assert_ne!(second_id, first_id, "a wrong captcha draws a new one");
    assert_eq!(browser.property("#image-code", "value").await, json!(""));
    assert!(stack.inbox(&mobile).is_empty(), "nothing was sent");

    // The right captcha: the SMS goes out and the button counts down.
    wait_captcha_loaded(&browser).await;
    let text = stack.captcha_text(&second_id).await;
    browser.type_into("#image-code", &text).await;
    browser.click("#send-sms").await;
    browser
        .wait_until(Duration::from_secs(20), "the countdown", || async {
            browser.text("#send-sms").await.ends_with("秒后重新发送")
        })
        .await;
    assert_eq!(browser.property("#send-sms", "disabled").await, json!(true));
    assert!(
        !browser.displayed("#form-error").await,
        "the old message is gone"
    );
    let code = stack.sms_code_from_inbox(&mobile).await;

    // A wrong SMS code first: the top message, nothing registered.
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    browser.type_into("#sms-code", wrong_code).await;
    browser.click("#allow").await;
    browser.click("#submit").await;
    browser
        .wait_until(
            Duration::from_secs(20),
            "the wrong-code message",
            || async { browser.text("#form-error").await == "短信验证码错误" },
        )
        .await;
    assert_eq!(
        stack.database.scalar(&format!(
            "SELECT COUNT(*) FROM tb_users WHERE mobile = '{mobile}'"
        )),
        Some("0".to_owned())
    );

    // The right code: a filled form, then the success state.
    browser.clear("#sms-code").await;
    browser.type_into("#sms-code", &code).await;
    let shots = artifacts_dir();
    browser.screenshot(&shots.join("register-filled.png")).await;
    browser.click("#submit").await;
    browser
        .wait_until(Duration::from_secs(20), "the success state", || async {
            browser.displayed("#success").await
        })
        .await;
    assert_eq!(browser.text("#success-username").await, username);
    assert!(!browser.displayed("#register-form").await);
    browser
        .screenshot(&shots.join("register-success.png"))
        .await;

    // The token is stored the way the meiduo front end stores it.
    let stored = browser
        .execute(
            "return [localStorage.token, localStorage.user_id, localStorage.username];",
            vec![],
        )
        .await;
    let row = stack.database.query(&format!(
        "SELECT id, username, mobile FROM tb_users WHERE username = '{username}'"
    ));
    assert_eq!(row.len(), 1, "one row for {username}");
    assert_eq!(row[0][2], mobile);
    assert_eq!(stored[1], Value::String(row[0][0].clone()));
    assert_eq!(stored[2], json!(username));
    assert_eq!(
        stored[0].as_str().map(|t| t.split('.').count()),
        Some(3),
        "a JWT in localStorage.token: {stored}"
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_throttling_and_an_unavailable_service_at_the_top() {
    // Two availability lookups a minute for this browser, so the third is a 429.
    let mut stack =
        Stack::start_with(Options::default().env("COUNT_LIMIT_PER_IP_PER_MINUTE", "2")).await;
    let driver = ChromeDriver::start();
    let browser = driver.session().await;
    browser.goto(&stack.url("/")).await;
    wait_captcha_loaded(&browser).await;

    browser
        .type_into("#username", &format!("{}{TAB}", random_username()))
        .await;
    browser
        .type_into("#mobile", &format!("{}{TAB}", random_mobile()))
        .await;
    // Both lookups answered (no message), and nothing is at the top yet.
    assert!(!browser.displayed("#form-error").await);
    browser.clear("#username").await;
    browser
        .type_into("#username", &format!("{}{TAB}", random_username()))
        .await;
    browser
        .wait_until(Duration::from_secs(20), "the 429 message", || async {
            browser.text("#form-error").await == "请求次数过于频繁，请稍后再试"
        })
        .await;

    // users-svc goes away: registering shows the gateway's 503 text.
    stack.users.stop();
    browser.type_into("#password", "outage-pass-1").await;
    browser.type_into("#password2", "outage-pass-1").await;
    browser.type_into("#sms-code", "123456").await;
    browser.click("#allow").await;
    browser.click("#submit").await;
    browser
        .wait_until(Duration::from_secs(20), "the 503 message", || async {
            browser.text("#form-error").await == "服务暂时不可用，请稍后重试"
        })
        .await;
    assert!(!browser.displayed("#success").await);
    assert_eq!(
        browser.property("#submit", "disabled").await,
        json!(false),
        "the form can be sent again"
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_counts_password_characters_after_trimming_as_the_server_does() {
    // The server trims the password and counts Unicode characters (8–20); the page must agree, or
    // it refuses a password the server takes (an emoji is 2 UTF-16 units) or lets through one the
    // server refuses (spaces around it).
    let stack = Stack::start().await;
    let driver = ChromeDriver::start();
    let browser = driver.session().await;
    browser.goto(&stack.url("/")).await;
    let client = harness::http_client();
    let cases = [
        (
            "11 emoji: 22 UTF-16 units, 11 characters",
            "😀".repeat(11),
            true,
        ),
        (
            "7 emoji: 14 UTF-16 units, 7 characters",
            "😀".repeat(7),
            false,
        ),
        ("20 CJK characters", "密".repeat(20), true),
        ("21 ASCII characters", "a".repeat(21), false),
        (
            "5 characters with spaces around",
            "   pass1   ".to_owned(),
            false,
        ),
        (
            "8 characters with spaces around",
            "  12345678  ".to_owned(),
            true,
        ),
        ("8 characters", "12345678".to_owned(), true),
        ("only spaces", "          ".to_owned(), false),
    ];
    let mut failures = Vec::new();
    for (what, password, accepted) in cases {
        // Set through script: ChromeDriver types only characters of the Basic Multilingual Plane.
        let shown = browser
            .execute(
                "const p = document.getElementById('password'); p.value = arguments[0]; \
                 p.dispatchEvent(new Event('blur')); \
                 return document.getElementById('password-error').textContent;",
                vec![json!(password)],
            )
            .await;
        let reply = crate::stack::Reply::of(
            client
                .post(stack.url("/users/"))
                .json(&json!({"password": password})),
        )
        .await;
        assert_eq!(reply.status, 400, "{what}: the other fields are missing");
        let server_error = reply.json().get("password").cloned();
        let page_accepts = shown == json!("");
        if page_accepts != accepted || server_error.is_none() != accepted {
            failures.push(format!(
                "{what}: expected accepted={accepted}; page shows {shown}, server says {server_error:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    browser.quit().await;
}
