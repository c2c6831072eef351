//! The sms-sandbox over real HTTP: it accepts exactly what CCP accepts, records each message
//! once, rejects bad requests with CCP's codes, and injects the failures tests ask for.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use sms_sandbox::ccp::{self, authorization, sig};
use sms_sandbox::{Fault, Message, Sandbox, SandboxConfig};

const MOBILE: &str = "13800138000";

fn body(config: &SandboxConfig, to: &str, req_id: &str) -> String {
    json!({
        "to": to,
        "appId": config.app_id,
        "templateId": "1",
        "datas": ["123456", "5"],
        "reqId": req_id,
    })
    .to_string()
}

/// POST a TemplateSMS request signed with `token` at `ts`; answers (HTTP status, JSON body).
async fn send_signed(
    sandbox: &Sandbox,
    sid: &str,
    token: &str,
    ts: &str,
    body: String,
) -> (u16, Value) {
    send_signed_to(&sandbox.base_url(), sid, token, ts, body).await
}

async fn send_signed_to(
    base_url: &str,
    sid: &str,
    token: &str,
    ts: &str,
    body: String,
) -> (u16, Value) {
    let url = format!(
        "{base_url}/2013-12-26/Accounts/{sid}/SMS/TemplateSMS?sig={}",
        sig(sid, token, ts)
    );
    let res = harness::http_client()
        .post(url)
        .header("Accept", "application/json")
        .header("Content-Type", "application/json;charset=utf-8")
        .header("Authorization", authorization(sid, ts))
        .body(body)
        .send()
        .await
        .expect("the sandbox answers");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn send(sandbox: &Sandbox, body: String) -> (u16, Value) {
    let c = sandbox.config().clone();
    send_signed(
        sandbox,
        &c.account_sid,
        &c.auth_token,
        &ccp::timestamp(Utc::now()),
        body,
    )
    .await
}

async fn get_json(url: String) -> Value {
    harness::http_client()
        .get(url)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON")
}

async fn control(sandbox: &Sandbox, path: &str, body: Value) -> (u16, Value) {
    let res = harness::http_client()
        .post(format!("{}{path}", sandbox.base_url()))
        .json(&body)
        .send()
        .await
        .expect("answers");
    (
        res.status().as_u16(),
        res.json().await.expect("JSON answer"),
    )
}

#[tokio::test]
async fn a_correctly_signed_request_is_recorded_once_and_answered_like_ccp() {
    let sandbox = Sandbox::start(SandboxConfig::random()).await;
    let config = sandbox.config().clone();
    let before = Utc::now();

    let (status, answer) = send(&sandbox, body(&config, MOBILE, "req1")).await;

    assert_eq!(status, 200);
    assert_eq!(answer["statusCode"], "000000", "{answer}");
    let created = answer["templateSMS"]["dateCreated"]
        .as_str()
        .expect("dateCreated");
    assert_eq!(created.len(), 14, "{answer}");
    assert!(created.bytes().all(|b| b.is_ascii_digit()), "{answer}");
    let sid = answer["templateSMS"]["smsMessageSid"]
        .as_str()
        .expect("sid");
    assert_eq!(sid.len(), 32, "{answer}");

    let listed = get_json(format!("{}/messages?mobile={MOBILE}", sandbox.base_url())).await;
    let listed: Vec<Message> = serde_json::from_value(listed).expect("messages shape");
    assert_eq!(listed.len(), 1);
    let m = &listed[0];
    assert_eq!(
        (
            m.to.as_str(),
            m.app_id.as_str(),
            m.template_id.as_str(),
            m.datas.clone(),
            m.req_id.as_deref()
        ),
        (
            MOBILE,
            config.app_id.as_str(),
            "1",
            vec!["123456".to_owned(), "5".to_owned()],
            Some("req1")
        )
    );
    assert!(m.received_at >= before && m.received_at <= Utc::now());
    assert_eq!(sandbox.messages(), listed);
    let raw = get_json(format!("{}/messages", sandbox.base_url())).await;
    let keys: Vec<&String> = raw[0].as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        [
            "app_id",
            "datas",
            "provider",
            "received_at",
            "req_id",
            "template_id",
            "to"
        ]
    );
    assert_eq!(
        get_json(format!(
            "{}/messages?mobile=13900139000",
            sandbox.base_url()
        ))
        .await,
        json!([])
    );
}

#[tokio::test]
async fn bad_requests_get_ccp_codes_and_record_nothing() {
    let sandbox = Sandbox::start(SandboxConfig::random()).await;
    let c = sandbox.config().clone();
    let now = ccp::timestamp(Utc::now());
    let stale = ccp::timestamp(Utc::now() - chrono::Duration::hours(25));
    let other = SandboxConfig::random();
    let cases: Vec<(&str, (u16, Value), &str)> = vec![
        (
            "signature made with the wrong token",
            send_signed(
                &sandbox,
                &c.account_sid,
                &other.auth_token,
                &now,
                body(&c, MOBILE, "a"),
            )
            .await,
            "111109",
        ),
        (
            "timestamp older than 24 h",
            send_signed(
                &sandbox,
                &c.account_sid,
                &c.auth_token,
                &stale,
                body(&c, MOBILE, "b"),
            )
            .await,
            "111106",
        ),
        (
            "timestamp not yyyyMMddHHmmss",
            send_signed(
                &sandbox,
                &c.account_sid,
                &c.auth_token,
                "2026-11-27T18:00",
                body(&c, MOBILE, "c"),
            )
            .await,
            "111113",
        ),
        (
            "unknown account",
            send_signed(
                &sandbox,
                &other.account_sid,
                &c.auth_token,
                &now,
                body(&c, MOBILE, "d"),
            )
            .await,
            "111141",
        ),
        (
            "unknown appId",
            send(&sandbox, body(&other, MOBILE, "e")).await,
            "111181",
        ),
        (
            "bad mobile",
            send(&sandbox, body(&c, "12800138000", "f")).await,
            "160042",
        ),
        (
            "datas as numbers",
            send(
                &sandbox,
                json!({"to": MOBILE, "appId": c.app_id, "templateId": "1", "datas": [123456, 5]})
                    .to_string(),
            )
            .await,
            "160052",
        ),
    ];
    for (why, (status, answer), code) in cases {
        assert_eq!(status, 200, "{why}: CCP answers errors with HTTP 200");
        assert_eq!(answer["statusCode"], code, "{why}: {answer}");
        assert!(answer["statusMsg"].is_string(), "{why}: {answer}");
    }

    // Authorization's account differs from the URL's.
    let url = format!(
        "{}/2013-12-26/Accounts/{}/SMS/TemplateSMS?sig={}",
        sandbox.base_url(),
        c.account_sid,
        sig(&c.account_sid, &c.auth_token, &now)
    );
    let answer: Value = harness::http_client()
        .post(&url)
        .header("Authorization", authorization(&other.account_sid, &now))
        .body(body(&c, MOBILE, "g"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["statusCode"], "111107", "{answer}");
    // No Authorization at all.
    let answer: Value = harness::http_client()
        .post(&url)
        .body(body(&c, MOBILE, "h"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["statusCode"], "111101", "{answer}");

    assert_eq!(sandbox.messages(), vec![]);
    assert_eq!(sandbox.calls().len(), 9, "every call is listed in /calls");
}

#[tokio::test]
async fn a_repeated_req_id_answers_160054_and_is_recorded_once() {
    let sandbox = Sandbox::start(SandboxConfig::random()).await;
    let c = sandbox.config().clone();
    let (_, first) = send(&sandbox, body(&c, MOBILE, "same")).await;
    let (_, second) = send(&sandbox, body(&c, MOBILE, "same")).await;
    let (_, other) = send(&sandbox, body(&c, MOBILE, "other")).await;
    assert_eq!(
        (
            &first["statusCode"],
            &second["statusCode"],
            &other["statusCode"]
        ),
        (&json!("000000"), &json!("160054"), &json!("000000"))
    );
    let req_ids: Vec<Option<String>> = sandbox.messages().into_iter().map(|m| m.req_id).collect();
    assert_eq!(req_ids, [Some("same".into()), Some("other".into())]);
}

#[tokio::test]
async fn injected_status_codes_and_http_errors_apply_to_the_next_calls_only() {
    let sandbox = Sandbox::start(SandboxConfig::random()).await;
    let c = sandbox.config().clone();
    assert_eq!(
        control(
            &sandbox,
            "/control/fail",
            json!({"count": 2, "status_code": "160038"})
        )
        .await,
        (200, json!({"queued": 2}))
    );
    sandbox.inject(Fault::http_status(1, 503));
    assert_eq!(
        control(&sandbox, "/control/fail", json!({"malformed": true})).await,
        (200, json!({"queued": 4}))
    );

    let mut answers = Vec::new();
    for i in 0..5 {
        answers.push(send(&sandbox, body(&c, MOBILE, &format!("r{i}"))).await);
    }
    assert_eq!(answers[0].1["statusCode"], "160038");
    assert_eq!(answers[1].1["statusCode"], "160038");
    assert_eq!(answers[2].0, 503);
    assert!(answers[2].1.is_string(), "a gateway error page, not JSON");
    assert_eq!(
        (answers[3].0, answers[3].1.clone()),
        (200, json!("<html>upstream error"))
    );
    assert_eq!(answers[4].1["statusCode"], "000000");
    let only: Vec<Option<String>> = sandbox.messages().into_iter().map(|m| m.req_id).collect();
    assert_eq!(only, [Some("r4".into())]);

    let codes: Vec<(Option<u16>, Option<String>)> = sandbox
        .calls()
        .into_iter()
        .map(|c| (c.http_status, c.status_code))
        .collect();
    assert_eq!(
        codes,
        [
            (Some(200), Some("160038".into())),
            (Some(200), Some("160038".into())),
            (Some(503), None),
            (Some(200), None),
            (Some(200), Some("000000".into())),
        ]
    );

    for (why, bad) in [
        ("unknown field", json!({"count": 1, "status": "1"})),
        ("status code not 6 digits", json!({"status_code": "abc"})),
        ("http status out of range", json!({"http_status": 42})),
    ] {
        assert_eq!(
            control(&sandbox, "/control/fail", bad).await.0,
            400,
            "{why}"
        );
    }
}

#[tokio::test]
async fn a_delayed_call_hangs_then_is_answered_and_recorded() {
    let sandbox = Sandbox::start(SandboxConfig::random()).await;
    let c = sandbox.config().clone();
    control(&sandbox, "/control/fail", json!({"delay_ms": 400})).await;
    let started = Instant::now();
    let (_, answer) = send(&sandbox, body(&c, MOBILE, "slow")).await;
    let slow = started.elapsed();
    let started = Instant::now();
    let (_, next) = send(&sandbox, body(&c, MOBILE, "fast")).await;
    let fast = started.elapsed();
    assert_eq!(
        (&answer["statusCode"], &next["statusCode"]),
        (&json!("000000"), &json!("000000"))
    );
    assert!(slow >= Duration::from_millis(400), "{slow:?}");
    assert!(fast < Duration::from_millis(300), "{fast:?}");
    assert_eq!(sandbox.messages().len(), 2);

    // A fixed latency applies to every call until changed.
    assert_eq!(
        control(&sandbox, "/control/latency", json!({"ms": 250})).await,
        (200, json!({"latency_ms": 250}))
    );
    for i in 0..2 {
        let started = Instant::now();
        send(&sandbox, body(&c, MOBILE, &format!("lat{i}"))).await;
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
}

#[tokio::test]
async fn reset_forgets_messages_req_ids_and_faults() {
    let sandbox = Sandbox::start(SandboxConfig::random()).await;
    let c = sandbox.config().clone();
    send(&sandbox, body(&c, MOBILE, "x")).await;
    sandbox.inject(Fault::status_code(3, "160000"));
    assert_eq!(
        control(&sandbox, "/control/reset", json!({})).await,
        (200, json!({"status": "reset"}))
    );
    assert_eq!(sandbox.messages(), vec![]);
    assert_eq!(sandbox.calls(), vec![]);
    let (_, answer) = send(&sandbox, body(&c, MOBILE, "x")).await;
    assert_eq!(
        answer["statusCode"], "000000",
        "the same reqId is new again and no fault is left"
    );
}

#[tokio::test]
async fn the_inbox_page_lists_messages_newest_first_and_unknown_routes_are_json_404() {
    let sandbox = Sandbox::start(SandboxConfig::random()).await;
    let c = sandbox.config().clone();
    send(&sandbox, body(&c, "13800138000", "1")).await;
    send(&sandbox, body(&c, "13900139000", "2")).await;
    let res = harness::http_client()
        .get(format!("{}/", sandbox.base_url()))
        .send()
        .await
        .expect("answers");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let page = res.text().await.expect("page");
    let newer = page.find("13900139000").expect("listed");
    let older = page.find("13800138000").expect("listed");
    assert!(newer < older, "newest first");
    assert!(
        page.contains("123456"),
        "the code is shown to the developer"
    );

    let res = harness::http_client()
        .get(format!("{}/nope", sandbox.base_url()))
        .send()
        .await
        .expect("answers");
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.json::<Value>().await.expect("JSON"),
        json!({"detail": "Not found."})
    );
}

#[tokio::test]
async fn the_binary_rejects_bad_credentials_with_exit_2_and_one_line() {
    let bin = env!("CARGO_BIN_EXE_sms-sandbox");
    let out = std::process::Command::new(bin)
        .env("PORT", "0")
        .env("CCP_APP_ID", "not-hex")
        .env("CCP_AUTH_TOKEN", "short")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("CCP_APP_ID"), "{stderr}");
    assert!(stderr.contains("CCP_AUTH_TOKEN"), "{stderr}");
}

#[tokio::test]
async fn the_binary_serves_the_account_from_its_environment() {
    let config = SandboxConfig::random();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sms-sandbox"))
        .env("PORT", port.to_string())
        .env("CCP_ACCOUNT_SID", &config.account_sid)
        .env("CCP_AUTH_TOKEN", &config.auth_token)
        .env("CCP_APP_ID", &config.app_id)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(child);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the sandbox did not open its port"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let ts = ccp::timestamp(Utc::now());
    let (_, answer) = send_signed_to(
        &base,
        &config.account_sid,
        &config.auth_token,
        &ts,
        body(&config, MOBILE, "bin1"),
    )
    .await;
    assert_eq!(answer["statusCode"], "000000", "{answer}");
    let (_, wrong) = send_signed_to(
        &base,
        &config.account_sid,
        "0".repeat(32).as_str(),
        &ts,
        body(&config, MOBILE, "bin2"),
    )
    .await;
    assert_eq!(wrong["statusCode"], "111109", "{wrong}");
    let listed = get_json(format!("{base}/messages?mobile={MOBILE}")).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["req_id"], "bin1");
}

#[tokio::test]
async fn clear_ends_queued_faults_but_keeps_the_records() {
    let sandbox = Sandbox::start(SandboxConfig::random()).await;
    let c = sandbox.config().clone();
    send(&sandbox, body(&c, MOBILE, "before")).await;
    sandbox.inject(Fault::status_code(1_000, "160000"));
    assert_eq!(
        control(&sandbox, "/control/clear", json!({})).await,
        (200, json!({"status": "cleared"}))
    );
    let (_, answer) = send(&sandbox, body(&c, MOBILE, "after")).await;
    assert_eq!(answer["statusCode"], "000000", "no fault is left");
    let sent: Vec<String> = sandbox.messages().iter().map(|m| m.to.clone()).collect();
    assert_eq!(sent, vec![MOBILE.to_owned(), MOBILE.to_owned()]);
    assert_eq!(
        sandbox.calls().len(),
        2,
        "the calls before the clear are kept"
    );
}

/// An Aliyun `SendSms` to `to` with `out_id`, signed with a fresh nonce.
async fn aliyun_send(sandbox: &Sandbox, to: &str, out_id: &str, nonce: &str) -> Value {
    let a = &sandbox.config().aliyun;
    let timestamp = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut params: Vec<(String, String)> = [
        ("AccessKeyId", a.access_key_id.as_str()),
        ("Action", "SendSms"),
        ("Format", "JSON"),
        ("RegionId", "cn-hangzhou"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", nonce),
        ("SignatureVersion", "1.0"),
        ("Timestamp", &timestamp),
        ("Version", sms_sandbox::aliyun::VERSION),
        ("PhoneNumbers", to),
        ("SignName", &a.sign_name),
        ("TemplateCode", &a.template_code),
        ("TemplateParam", r#"{"code":"123456"}"#),
        ("OutId", out_id),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let signature = sms_sandbox::aliyun::signature(&a.access_key_secret, "POST", &params);
    params.push(("Signature".into(), signature));
    let res = harness::http_client()
        .post(format!("{}/", sandbox.base_url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&params).expect("form"))
        .send()
        .await
        .expect("the sandbox answers");
    res.json().await.expect("JSON")
}

/// A Tencent `SendSms` to `to` with `context`, signed.
async fn tencent_send(sandbox: &Sandbox, to: &str, context: &str) -> Value {
    use sms_sandbox::tencent;
    let t = &sandbox.config().tencent;
    let body = json!({
        "PhoneNumberSet": [format!("+86{to}")], "SmsSdkAppId": t.sdk_app_id,
        "SignName": t.sign_name, "TemplateId": t.template_id,
        "TemplateParamSet": ["123456", "5"], "SessionContext": context,
    })
    .to_string();
    let host = format!("127.0.0.1:{}", sandbox.port());
    let now = Utc::now().timestamp();
    let date = tencent::date_of(now).expect("date");
    let headers = vec![
        (
            "content-type".to_owned(),
            "application/json; charset=utf-8".to_owned(),
        ),
        ("host".to_owned(), host),
    ];
    let canonical = tencent::canonical_request(&headers, body.as_bytes());
    let sts = tencent::string_to_sign(now, &date, "sms", &canonical);
    let signature = tencent::signature(&t.secret_key, &date, "sms", &sts);
    let auth = format!(
        "TC3-HMAC-SHA256 Credential={}/{date}/sms/tc3_request, SignedHeaders=content-type;host, Signature={signature}",
        t.secret_id
    );
    let res = harness::http_client()
        .post(format!("{}/", sandbox.base_url()))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("X-TC-Action", "SendSms")
        .header("X-TC-Version", tencent::VERSION)
        .header("X-TC-Timestamp", now.to_string())
        .header("X-TC-Region", "ap-guangzhou")
        .header("Authorization", auth)
        .body(body)
        .send()
        .await
        .expect("the sandbox answers");
    res.json().await.expect("JSON")
}

#[tokio::test]
async fn only_ccp_de_duplicates_aliyun_and_tencent_send_a_repeated_request_again() {
    let sandbox = Sandbox::start(SandboxConfig::random()).await;
    let c = sandbox.config().clone();
    // CCP: the same reqId to another number is refused (160054).
    let (_, first) = send(&sandbox, body(&c, MOBILE, "same")).await;
    let (_, again) = send(&sandbox, body(&c, "13900139000", "same")).await;
    assert_eq!(
        (first["statusCode"].as_str(), again["statusCode"].as_str()),
        (Some("000000"), Some("160054"))
    );
    // Aliyun: the same OutId to another number is a second message; a reused nonce is refused.
    assert_eq!(
        aliyun_send(&sandbox, MOBILE, "same", "n1").await["Code"],
        "OK"
    );
    assert_eq!(
        aliyun_send(&sandbox, "13900139000", "same", "n2").await["Code"],
        "OK"
    );
    assert_eq!(
        aliyun_send(&sandbox, "13700137000", "same", "n2").await["Code"],
        "SignatureNonceUsed"
    );
    // Aliyun's flow control: a second code to one number within a minute is refused.
    assert_eq!(
        aliyun_send(&sandbox, MOBILE, "other", "n3").await["Code"],
        "isv.BUSINESS_LIMIT_CONTROL"
    );
    // Tencent: the same SessionContext to another number is a second message; the same content
    // to the same number within 30 s is refused for that number.
    let ok = tencent_send(&sandbox, MOBILE, "same").await;
    assert_eq!(ok["Response"]["SendStatusSet"][0]["Code"], "Ok", "{ok}");
    assert_eq!(ok["Response"]["SendStatusSet"][0]["SessionContext"], "same");
    assert_eq!(
        tencent_send(&sandbox, "13900139000", "same").await["Response"]["SendStatusSet"][0]["Code"],
        "Ok"
    );
    assert_eq!(
        tencent_send(&sandbox, MOBILE, "again").await["Response"]["SendStatusSet"][0]["Code"],
        "LimitExceeded.PhoneNumberThirtySecondLimit"
    );
    let carriers: Vec<(String, String)> = sandbox
        .messages()
        .into_iter()
        .map(|m| (m.provider, m.to))
        .collect();
    assert_eq!(
        carriers,
        [
            ("ccp".to_owned(), MOBILE.to_owned()),
            ("aliyun".to_owned(), MOBILE.to_owned()),
            ("aliyun".to_owned(), "13900139000".to_owned()),
            ("tencent".to_owned(), MOBILE.to_owned()),
            ("tencent".to_owned(), "13900139000".to_owned()),
        ]
    );
}
