//! Who the gateway thinks the client is, shown by traffic: with `REAL_IP_FROM` trusting this
//! test's connections, the X-Forwarded-For it sends names the client. IPv6 clients are keyed by
//! their /64 (in the access log's `key=`, in nginx's limit zones, in the services' Redis
//! counters).

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

    let log = stack.gateway_access_log();
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
