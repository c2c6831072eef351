//! Who the gateway thinks the client is, shown by traffic: with `REAL_IP_FROM` trusting this
//! test's connections, the X-Forwarded-For it sends names the client. IPv6 clients are keyed by
//! their /64 (in the access log's `key=`, in nginx's limit zones, in the services' Redis
//! counters), and a private client address gets the flood limit from its own zone, whose
//! refusal warning names the symptom of a proxy missing from `REAL_IP_FROM`.

use crate::stack::{Options, Stack};

const THROTTLED: &str = r#"{"detail":"请求次数过于频繁，请稍后再试"}"#;

async fn trusting_this_test() -> Stack {
    Stack::start_with(Options {
        real_ip_from: Some("127.0.0.1/32".to_owned()),
        ..Options::default()
    })
    .await
}

/// `GET path` as the client `client` (the X-Forwarded-For a trusted proxy would send):
/// status and body.
async fn get_as(stack: &Stack, path: &str, client: &str) -> (u16, String) {
    let res = harness::http_client()
        .get(stack.url(path))
        .header("x-forwarded-for", client)
        .send()
        .await
        .expect("the gateway answers");
    let status = res.status().as_u16();
    (status, res.text().await.expect("a body"))
}

/// Captchas for `client` until the gateway's captcha zone (60/min, burst 20) refuses one: how
/// many it let through.
async fn captchas_until_refused(stack: &Stack, client: &str) -> usize {
    for n in 0..60 {
        let path = format!("/image_codes/{}/", uuid::Uuid::new_v4());
        let (status, body) = get_as(stack, &path, client).await;
        if status == 429 {
            assert_eq!(body, THROTTLED);
            return n;
        }
        assert_eq!(status, 200, "{body}");
    }
    panic!("60 captchas for {client} and the gateway refused none");
}

#[tokio::test]
async fn ipv6_clients_are_one_client_per_64_at_the_gateway_and_in_the_services() {
    let stack = trusting_this_test().await;
    let allowed = captchas_until_refused(&stack, "2001:db8::1").await;
    // The burst of 20 plus the first, plus the one a second the bucket gives back meanwhile.
    assert!((21..=30).contains(&allowed), "{allowed} captchas");
    // Another address of the same /64 finds the bucket as full: of three quick requests at
    // most one (a refill) passes; with a budget of its own all three would.
    let mut same_64_ok = 0;
    for _ in 0..3 {
        let path = format!("/image_codes/{}/", uuid::Uuid::new_v4());
        let (status, body) = get_as(&stack, &path, "2001:db8::2").await;
        assert!(
            status == 200 || (status, body.as_str()) == (429, THROTTLED),
            "{status} {body}"
        );
        same_64_ok += usize::from(status == 200);
    }
    assert!(
        same_64_ok <= 1,
        "the same /64 shares the budget: {same_64_ok} of 3 passed"
    );
    let path = format!("/image_codes/{}/", uuid::Uuid::new_v4());
    let (status, _) = get_as(&stack, &path, "2001:db8:0:1::1").await;
    assert_eq!(status, 200, "another /64 has its own budget");

    // The last request's line is the last one written.
    let log = stack
        .gateway_access_log_with("2001:db8:0:1::1 key=2001:db8:0:1 ")
        .await;
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("2001:db8::1 key=2001:db8:0:0 "), allowed + 1, "{log}");
    assert_eq!(lines("2001:db8::2 key=2001:db8:0:0 "), 3, "{log}");
    assert_eq!(lines("2001:db8:0:1::1 key=2001:db8:0:1 "), 1, "{log}");
    // The services count the same clients: every captcha the gateway let through, under the
    // client's /64.
    assert_eq!(
        stack
            .redis_get("rl:captcha_issue:2001:db8:0:0::/64")
            .await
            .as_deref(),
        Some((allowed + same_64_ok).to_string().as_str())
    );
    assert_eq!(
        stack
            .redis_get("rl:captcha_issue:2001:db8:0:1::/64")
            .await
            .as_deref(),
        Some("1")
    );
}

/// 400 requests for the OpenAPI document (a file nginx serves itself) as `client`, 16 at a
/// time: how many were refused. Far past the flood limit (50/s, burst 100) however slow the
/// machine.
async fn burst(stack: &Stack, client: &'static str) -> usize {
    let url = stack.url("/openapi.json");
    let http = harness::http_client();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (url, http) = (url.clone(), http.clone());
        tasks.spawn(async move {
            let mut refused = 0;
            for _ in 0..25 {
                let res = http.get(&url).header("x-forwarded-for", client).send();
                let status = res.await.expect("the gateway answers").status().as_u16();
                assert!(status == 200 || status == 429, "{status}");
                refused += usize::from(status == 429);
            }
            refused
        });
    }
    let mut refused = 0;
    while let Some(n) = tasks.join_next().await {
        refused += n.expect("the task finishes");
    }
    refused
}

#[tokio::test]
async fn one_private_address_past_the_flood_limit_is_named_by_its_own_zone_in_the_error_log() {
    let stack = trusting_this_test().await;
    let warning = r#"by zone "meiduo_flood_private", client: 10.1.2.3,"#;
    // A handful of requests: nothing to report.
    for _ in 0..5 {
        assert_eq!(get_as(&stack, "/openapi.json", "10.1.2.3").await.0, 200);
    }
    assert!(!stack.gateway_error_log().contains("meiduo_flood_private"));

    // A public client past the flood limit (50/s, burst 100) is refused as before, under the
    // public zone.
    assert!(burst(&stack, "198.51.100.7").await > 0);
    let log = stack.gateway_error_log();
    assert!(
        log.contains(r#"by zone "meiduo_flood", client: 198.51.100.7,"#),
        "{log}"
    );
    assert!(!log.contains("meiduo_flood_private"), "{log}");

    // The same burst from one private address: the same limit, named as the private zone.
    assert!(burst(&stack, "10.1.2.3").await > 0);
    let log = stack.gateway_error_log();
    assert!(log.contains(warning), "{log}");
    assert!(
        log.lines()
            .filter(|l| l.contains("meiduo_flood_private"))
            .all(|l| l.contains("[warn]") && l.contains("client: 10.1.2.3,")),
        "{log}"
    );
}
