//! `GET /sms_codes/`: a right captcha issues a code, stores it and queues exactly one job; the
//! text is compared case-insensitively; the template id comes from the configuration.

use super::*;

#[tokio::test]
async fn a_right_captcha_issues_a_code_stores_it_and_queues_exactly_one_job() {
    let app = spawn_app().await;
    let id = new_id();
    app.seed_image_code(&id, "ACDE");
    let _: () = app
        .redis_conn()
        .set_ex(format!("sms_attempts_{MOBILE}"), 3, 300)
        .expect("SETEX");
    let before = Utc::now();

    let (status, body) = status_and_body(app.sms_code(MOBILE, &id, "ACDE").await).await;
    assert_eq!((status, body.as_str()), (200, OK));

    assert_eq!(
        app.value(&format!("img_{id}")),
        None,
        "the captcha is used up"
    );
    let code = app
        .value(&format!("sms_{MOBILE}"))
        .expect("the code is stored");
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    let ttl = app.ttl(&format!("sms_{MOBILE}"));
    assert!((295..=300).contains(&ttl), "code TTL {ttl}");
    let flag_ttl = app.ttl(&format!("send_flag_{MOBILE}"));
    assert!((55..=60).contains(&flag_ttl), "flag TTL {flag_ttl}");
    assert_eq!(
        app.value(&format!("sms_attempts_{MOBILE}")),
        None,
        "attempt counter reset"
    );
    let day = app.ttl(&format!("rl:sms_mobile:{MOBILE}"));
    assert!((86_395..=86_400).contains(&day), "{day}");
    let hour = app.ttl("rl:sms_ip:127.0.0.1");
    assert!((3_595..=3_600).contains(&hour), "{hour}");

    let jobs = app.queued_jobs();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(job.mobile.as_str(), MOBILE);
    assert_eq!(job.code.as_str(), code);
    assert_eq!(job.ttl_minutes, 5);
    assert_eq!(job.template_id, "1");
    assert_eq!(job.request_id.get_version_num(), 4);
    assert_eq!(
        app.value(&format!("send_flag_{MOBILE}")),
        Some(job.request_id.to_string()),
        "the flag names the send that holds it"
    );
    assert!(
        job.created_at >= before - chrono::Duration::seconds(1) && job.created_at <= Utc::now()
    );
    assert_eq!(
        app.metric(r#"codes_issued_total{kind="sms",service="verifications-svc"}"#)
            .await,
        1
    );
}

#[tokio::test]
async fn the_text_is_compared_case_insensitively_after_trimming() {
    let app = spawn_app().await;
    for (mobile, stored, typed) in [
        ("13800000001", "ACDE", "acde"),
        ("13800000002", "ACDE", "aCdE"),
        ("13800000003", "AC34", " ac34\t"),
    ] {
        let id = new_id();
        app.seed_image_code(&id, stored);
        let (status, body) = status_and_body(app.sms_code(mobile, &id, typed).await).await;
        assert_eq!((status, body.as_str()), (200, OK), "{typed:?}");
    }
    assert_eq!(app.queued_jobs().len(), 3);
}

#[tokio::test]
async fn the_template_id_comes_from_sms_template_id() {
    let app = spawn_app_with(Options::env(&[("SMS_TEMPLATE_ID", "42")])).await;
    assert_eq!(send(&app, MOBILE).await.status(), 200);
    assert_eq!(app.queued_jobs()[0].template_id, "42");
}
