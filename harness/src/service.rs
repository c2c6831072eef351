//! What every service's own tests share: the environment a test adds to the service it spawns
//! (each crate's `spawn_app_with(Options { .., env })`), and assertions on the operational
//! endpoints and the framework errors, which answer the same way in each service.

/// Environment variables a test sets on the service it spawns, over its helper's defaults:
/// appended after them, so they win (`shared::config::Env::from_vars` and `Command::envs` both
/// keep the last value of a name).
pub type Vars = Vec<(&'static str, String)>;

/// `vars` as owned [`Vars`]: what each crate's `Options::env(&[..])` holds.
pub fn vars(vars: &[(&'static str, &str)]) -> Vars {
    vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// `GET /healthz` is 200 `{"status":"ok"}`; an unknown route is 404 `{"detail":"Not found."}`;
/// a wrong method on a known route is 405 with DRF's text. `address` is `http://127.0.0.1:PORT`.
pub async fn assert_health_and_framework_errors(http: &reqwest::Client, address: &str) {
    let cases = [
        (
            "healthz",
            http.get(format!("{address}/healthz")),
            200,
            r#"{"status":"ok"}"#,
        ),
        (
            "unknown route",
            http.get(format!("{address}/nope/")),
            404,
            r#"{"detail":"Not found."}"#,
        ),
        (
            "wrong method",
            http.post(format!("{address}/healthz")),
            405,
            r#"{"detail":"方法 “POST” 不被允许。"}"#,
        ),
    ];
    for (why, request, status, body) in cases {
        let res = request.send().await.expect("the service answers");
        let got_status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let got_body = res.text().await.expect("a body");
        assert_eq!((got_status, got_body.as_str()), (status, body), "{why}");
        assert_eq!(content_type.as_deref(), Some("application/json"), "{why}");
    }
}

/// The whole seconds of a response's `Retry-After` (panics when it has none: tests use it to
/// assert one).
pub fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header of whole seconds")
}

/// A `/readyz` answer of 200 `{"status":"ready"}` from a service whose verify-codes Redis is
/// `redis`: it holds a connection to this test's own database, not to the server's default one.
pub async fn assert_ready(res: reqwest::Response, redis: &crate::TestRedis) {
    assert_eq!(res.status(), 200);
    let clients: String = ::redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut redis.client().get_connection().expect("connect"))
        .expect("CLIENT LIST");
    assert!(clients.contains(&format!(" db={} ", redis.db)), "{clients}");
    assert_eq!(res.text().await.expect("body"), r#"{"status":"ready"}"#);
}

/// A `/readyz` answer of 503 with `Retry-After: 5` whose body names exactly the `failed` checks.
pub async fn assert_unready(res: reqwest::Response, failed: &[&str]) {
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let body: serde_json::Value = res.json().await.expect("a JSON body");
    assert_eq!(body["status"], "unavailable", "{body}");
    let mut named: Vec<&str> = body["failed"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    named.sort_unstable();
    assert_eq!(named, failed, "{body}");
    for name in failed {
        assert!(
            body["failed"][name].is_string(),
            "{name} has a reason: {body}"
        );
    }
}
