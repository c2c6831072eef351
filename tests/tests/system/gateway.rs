//! What the gateway adds, and every error path of docs/http-contract.md §2 as a browser sees it
//! through nginx: always JSON, DRF-shaped, whether nginx or a service made the answer.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde_json::{Value, json};

use crate::stack::{Options, Reply, Stack, http_client_from, workspace_root};

/// One request through the gateway and the exact answer expected.
struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    json: Value,
    /// The `Allow` header a 405 must carry.
    allow: Option<&'static str>,
}

fn case(what: &'static str, method: &'static str, path: &str, status: u16, json: Value) -> Case {
    Case {
        what,
        method,
        path: path.to_owned(),
        content_type: None,
        body: Vec::new(),
        status,
        json,
        allow: None,
    }
}

/// A 405 case: the answer must also name the allowed methods.
fn allowing(mut c: Case, allow: &'static str) -> Case {
    c.allow = Some(allow);
    c
}

fn with_body(mut c: Case, content_type: &'static str, body: impl Into<Vec<u8>>) -> Case {
    c.content_type = Some(content_type);
    c.body = body.into();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_reaches_the_client_as_drf_json_through_nginx() {
    let stack = Stack::start().await;
    let uuid = uuid::Uuid::new_v4();
    let required = json!(["该字段是必填项。"]);
    let cases = vec![
        // 404: nginx (no such route) and the services (paths that fail their pattern).
        case(
            "unknown route (nginx)",
            "GET",
            "/nope",
            404,
            json!({"detail": "Not found."}),
        ),
        case(
            "unknown API-looking route (nginx)",
            "GET",
            "/api/users/",
            404,
            json!({"detail": "Not found."}),
        ),
        case(
            "internal error location cannot be requested",
            "GET",
            "/.gateway-error/429",
            404,
            json!({"detail": "Not found."}),
        ),
        case(
            "username too short (users-svc)",
            "GET",
            "/usernames/abcd/count/",
            404,
            json!({"detail": "Not found."}),
        ),
        case(
            "mobile not a mobile (users-svc)",
            "GET",
            "/mobiles/12345678901/count/",
            404,
            json!({"detail": "Not found."}),
        ),
        case(
            "sms to a non-mobile (verifications-svc)",
            "GET",
            "/sms_codes/123/?image_code_id=x&text=abcd",
            404,
            json!({"detail": "Not found."}),
        ),
        case(
            "unknown path under a service prefix",
            "GET",
            "/users/1/",
            404,
            json!({"detail": "Not found."}),
        ),
        // 405: the services and nginx, with the method's name.
        allowing(
            case(
                "POST to a captcha (verifications-svc)",
                "POST",
                &format!("/image_codes/{uuid}/"),
                405,
                json!({"detail": "方法 “POST” 不被允许。"}),
            ),
            "GET",
        ),
        allowing(
            case(
                "GET /users/ (users-svc)",
                "GET",
                "/users/",
                405,
                json!({"detail": "方法 “GET” 不被允许。"}),
            ),
            "POST",
        ),
        allowing(
            case(
                "DELETE a count (users-svc)",
                "DELETE",
                "/mobiles/13800138000/count/",
                405,
                json!({"detail": "方法 “DELETE” 不被允许。"}),
            ),
            "GET",
        ),
        allowing(
            case(
                "POST to the page (nginx)",
                "POST",
                "/",
                405,
                json!({"detail": "方法 “POST” 不被允许。"}),
            ),
            "GET, HEAD",
        ),
        allowing(
            case(
                "PUT to a static file (nginx)",
                "PUT",
                "/register.js",
                405,
                json!({"detail": "方法 “PUT” 不被允许。"}),
            ),
            "GET, HEAD",
        ),
        allowing(
            case(
                "TRACE to the API (nginx refuses it itself)",
                "TRACE",
                "/users/",
                405,
                json!({"detail": "方法 “TRACE” 不被允许。"}),
            ),
            "POST",
        ),
        // 400 field errors.
        case(
            "captcha id not a UUID",
            "GET",
            "/image_codes/not-a-uuid/",
            400,
            json!({"image_code_id": ["Must be a valid UUID."]}),
        ),
        case(
            "sms query missing",
            "GET",
            "/sms_codes/13800138000/",
            400,
            json!({"image_code_id": required, "text": required}),
        ),
        case(
            "sms text too long",
            "GET",
            &format!("/sms_codes/13800138000/?image_code_id={uuid}&text=abcde"),
            400,
            json!({"text": ["请确保这个字段不能超过 4 个字符。"]}),
        ),
        case(
            "sms with an unknown captcha",
            "GET",
            &format!("/sms_codes/13800138000/?image_code_id={uuid}&text=abcd"),
            400,
            json!({"non_field_errors": ["图片验证码无效"]}),
        ),
        with_body(
            case(
                "register with an empty object",
                "POST",
                "/users/",
                400,
                json!({
            "username": required, "password": required, "password2": required,
            "sms_code": required, "mobile": required, "allow": required}),
            ),
            "application/json",
            "{}",
        ),
        with_body(
            case(
                "register with a list",
                "POST",
                "/users/",
                400,
                json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
            ),
            "application/json",
            "[]",
        ),
        with_body(
            case(
                "allow as a JSON boolean",
                "POST",
                "/users/",
                400,
                json!({"allow": ["Not a valid string."]}),
            ),
            "application/json",
            json!({"username": "abcde1", "password": "12345678", "password2": "12345678",
                   "sms_code": "123456", "mobile": "13800138000", "allow": true})
            .to_string(),
        ),
        // 413 (nginx refuses before the service), 415.
        with_body(
            case(
                "body over 16 KiB (nginx)",
                "POST",
                "/users/",
                413,
                json!({"detail": "请求体过大。"}),
            ),
            "application/json",
            vec![b' '; 16 * 1024 + 1],
        ),
        with_body(
            case(
                "text/plain body",
                "POST",
                "/users/",
                415,
                json!({"detail": "不支持请求中的媒体类型 “text/plain”。"}),
            ),
            "text/plain",
            "hello",
        ),
        // 414: a URI beyond nginx's buffers.
        case(
            "URI too long (nginx)",
            "GET",
            &format!("/usernames/{}/count/", "a".repeat(9000)),
            414,
            json!({"detail": "请求的 URI 过长。"}),
        ),
    ];

    let client = harness::http_client();
    let mut failures = Vec::new();
    for c in &cases {
        let mut req = client.request(c.method.parse().expect("a method"), stack.url(&c.path));
        if let Some(ct) = c.content_type {
            req = req.header("Content-Type", ct).body(c.body.clone());
        }
        let reply = Reply::of(req).await;
        let body: Option<Value> = serde_json::from_slice(&reply.body).ok();
        let ok = reply.status == c.status
            && reply.content_type.starts_with("application/json")
            && body.as_ref() == Some(&c.json)
            && reply.header("x-request-id").is_some_and(|v| !v.is_empty())
            && c.allow
                .is_none_or(|allow| reply.header("allow") == Some(allow));
        if !ok {
            failures.push(format!(
                "{}: {} {} → {} {:?} Allow {:?} {}",
                c.what,
                c.method,
                c.path.chars().take(80).collect::<String>(),
                reply.status,
                reply.content_type,
                reply.header("allow"),
                String::from_utf8_lossy(&reply.body)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "not the expected JSON:\n{}",
        failures.join("\n")
    );

    // Requests no HTTP client library will send, written on a raw TCP connection: nginx refuses
    // them itself. Its default answers were HTML pages, two of them 5xx (501, 505).
    let bad_request = json!({"detail": "请求格式错误。"});
    let raw_cases: Vec<(&str, String)> = vec![
        (
            "Transfer-Encoding gzip on POST /users/ (nginx's 501)",
            "POST /users/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: gzip\r\nConnection: close\r\n\r\n{}"
                .to_owned(),
        ),
        (
            "Transfer-Encoding gzip, chunked (nginx's 501)",
            "POST /users/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\
             Connection: close\r\n\r\n0\r\n\r\n"
                .to_owned(),
        ),
        (
            "request line HTTP/2.0 for a static file (nginx's 505)",
            "GET /register.js HTTP/2.0\r\nHost: x\r\n\r\n".to_owned(),
        ),
        (
            "request line HTTP/3.0 for an API route (nginx's 505)",
            format!("GET /image_codes/{uuid}/ HTTP/3.0\r\nHost: x\r\n\r\n"),
        ),
        (
            "garbage request line",
            "\x01\x02 / HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        ),
        (
            "both Content-Length and Transfer-Encoding",
            "POST /users/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\
             Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n{}"
                .to_owned(),
        ),
    ];
    for (what, request) in &raw_cases {
        let (status, content_type, body) = raw_exchange(stack.gateway.port, request.as_bytes());
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        if (status, content_type.as_str(), parsed.as_ref())
            != (400, "application/json", Some(&bad_request))
        {
            failures.push(format!(
                "{what} → {status} {content_type:?} {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "raw requests, not the expected JSON 400:\n{}",
        failures.join("\n")
    );

    // Malformed JSON: the parser's message varies, the shape does not.
    let reply = Reply::of(
        client
            .post(stack.url("/users/"))
            .header("Content-Type", "application/json")
            .body("{\"username\": "),
    )
    .await;
    assert_eq!(reply.status, 400);
    let detail = reply.json()["detail"].as_str().map(str::to_owned);
    assert!(
        detail
            .as_deref()
            .is_some_and(|d| d.starts_with("JSON parse error - ")),
        "{detail:?}"
    );
}

/// Write `request` on a new connection to 127.0.0.1:`port` and read the answer until nginx
/// closes it: (status, Content-Type, body).
fn raw_exchange(port: u16, request: &[u8]) -> (u16, String, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("nginx accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    stream.write_all(request).expect("the request is sent");
    let mut answer = Vec::new();
    // nginx closes the connection after refusing a request; a timeout ends a kept-alive one.
    let _ = stream.read_to_end(&mut answer);
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let body = answer[split + 4..].to_vec();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_nginx_may_not_read_is_a_json_403() {
    // Only nginx, serving a folder of the test's own with one unreadable file. As root, the
    // workers run as `nobody` here (the production-like setting), who may not read a 0600 file
    // owned by root; as another user, nobody can read a 0000 file.
    let dir = tempfile::tempdir().expect("a temp dir");
    let set_mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .expect("chmod");
    };
    set_mode(dir.path(), 0o755);
    let web = dir.path().join("web");
    std::fs::create_dir(&web).expect("mkdir");
    set_mode(&web, 0o755);
    std::fs::write(web.join("index.html"), "<p>hi</p>").expect("write");
    set_mode(&web.join("index.html"), 0o644);
    std::fs::write(web.join("secret.js"), "// unreadable").expect("write");
    let as_root = crate::stack::running_as_root();
    set_mode(&web.join("secret.js"), if as_root { 0o600 } else { 0o000 });
    let user = if as_root { "user nobody nogroup;" } else { "" };
    let refused = harness::process::free_port();
    let gateway = crate::stack::spawn_nginx_with(dir.path(), refused, refused, &web, user);
    let client = harness::http_client();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", gateway.port);

    let readable = Reply::of(client.get(url("/"))).await;
    assert_eq!(readable.status, 200, "the readable page is served");
    let reply = Reply::of(client.get(url("/secret.js"))).await;
    assert_eq!(
        reply.status,
        403,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(reply.json(), json!({"detail": "您没有执行该操作的权限。"}));
    assert!(reply.header("x-request-id").is_some_and(|v| v.len() == 32));
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_inside_a_private_folder_is_served_with_the_dev_main_config() {
    // A checkout under /root sits in a 0700 folder. With the main config deploy/dev and the tests
    // use (`user root;` when started as root) nginx's workers can still read it; without that
    // line they would be `nobody` and every file a 403.
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let web = dir.path().join("checkout/deploy/web");
    std::fs::create_dir_all(&web).expect("mkdir");
    std::fs::write(web.join("index.html"), "<p>meiduo</p>").expect("write");
    let refused = harness::process::free_port();
    let gateway = crate::stack::spawn_nginx_with(
        dir.path(),
        refused,
        refused,
        &web,
        crate::stack::default_nginx_user(),
    );
    let reply =
        Reply::of(harness::http_client().get(format!("http://127.0.0.1:{}/", gateway.port))).await;
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (200, b"<p>meiduo</p>".as_slice()),
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_and_the_service_refuse_an_oversized_body_with_the_same_json() {
    let stack = Stack::start().await;
    let client = harness::http_client();
    let big = vec![b' '; 16 * 1024 + 1];
    let through_nginx = Reply::of(
        client
            .post(stack.url("/users/"))
            .header("Content-Type", "application/json")
            .body(big.clone()),
    )
    .await;
    // The service's own limit, asked directly (nginx never lets such a body through).
    let direct = Reply::of(
        client
            .post(format!("http://127.0.0.1:{}/users/", stack.users.port))
            .header("Content-Type", "application/json")
            .body(big),
    )
    .await;
    assert_eq!((through_nginx.status, direct.status), (413, 413));
    assert_eq!(through_nginx.json(), json!({"detail": "请求体过大。"}));
    assert_eq!(through_nginx.json(), direct.json());
    // Exactly 16 KiB passes nginx and reaches the service's parser.
    let mut at_limit = vec![b' '; 16 * 1024 - 2];
    at_limit.splice(0..0, *b"{}");
    let reply = Reply::of(
        client
            .post(stack.url("/users/"))
            .header("Content-Type", "application/json")
            .body(at_limit),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.json());
    assert!(
        reply.json().get("username").is_some(),
        "the service validated it: {}",
        reply.json()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_gets_nginx_json_429_while_others_pass() {
    let stack = Stack::start().await;
    let flooder = http_client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let mut statuses = Vec::new();
    let mut throttled: Option<Reply> = None;
    // 50 r/s with a burst of 100: 250 requests at once must see some 429s, however slow the
    // machine is.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..250 {
        let req = flooder.get(stack.url("/style.css"));
        set.spawn(Reply::of(req));
    }
    while let Some(reply) = set.join_next().await {
        let reply = reply.expect("the request task finishes");
        statuses.push(reply.status);
        if reply.status == 429 && throttled.is_none() {
            throttled = Some(reply);
        }
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        ok + limited,
        statuses.len(),
        "only 200 or 429: {statuses:?}"
    );
    assert!(ok >= 100, "the burst passes: {ok} ok");
    assert!(limited > 0, "the flood is limited");
    let throttled = throttled.expect("a 429");
    throttled.assert_refusal(429, "请求次数过于频繁，请稍后再试", "1");

    // Another address is unaffected, and so is loopback (local benchmarks are exempt).
    let other = http_client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    assert_eq!(Reply::of(other.get(stack.url("/"))).await.status, 200);
    let local = harness::http_client();
    for _ in 0..150 {
        assert_eq!(
            Reply::of(local.get(stack.url("/style.css"))).await.status,
            200
        );
    }
    // The flooder gets through again once the rate allows.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(Reply::of(flooder.get(stack.url("/"))).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_is_a_json_503_and_the_other_keeps_working() {
    let mut stack = Stack::start().await;
    let client = harness::http_client();
    stack.users.stop();
    for path in ["/usernames/someone1/count/", "/mobiles/13800138000/count/"] {
        let reply = Reply::of(client.get(stack.url(path))).await;
        reply.assert_refusal(503, "服务暂时不可用，请稍后重试", "5");
    }
    let reply = Reply::of(client.post(stack.url("/users/")).json(&json!({}))).await;
    reply.assert_refusal(503, "服务暂时不可用，请稍后重试", "5");
    // verifications-svc is unaffected.
    let (_, text) = stack.captcha().await;
    assert_eq!(text.chars().count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_the_services_json_503_passed_through_unchanged() {
    let mut stack = Stack::start_with(Options {
        private_redis: true,
        ..Options::default()
    })
    .await;
    let client = harness::http_client();
    stack
        .private_redis
        .as_mut()
        .expect("a private Redis")
        .stop();
    let reply =
        Reply::of(client.get(stack.url(&format!("/image_codes/{}/", uuid::Uuid::new_v4())))).await;
    // The service's own answer for a dependency that is down.
    reply.assert_refusal(503, "服务暂时不可用，请稍后重试", "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_when_sane_replaced_when_not_and_reach_the_service_log() {
    let stack = Stack::start().await;
    let client = harness::http_client();
    let id = format!("e2e-trace-{}", uuid::Uuid::new_v4().simple());
    let reply = Reply::of(
        client
            .get(stack.url("/mobiles/13800138000/count/"))
            .header("X-Request-Id", &id),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-id"), Some(id.as_str()));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !stack.users.log_text().contains(&id) {
        assert!(
            std::time::Instant::now() < deadline,
            "users-svc never logged {id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Not sane (spaces, or too long): nginx makes its own, 32 hex digits.
    for bad in ["has spaces in it", &"x".repeat(200)] {
        let reply = Reply::of(
            client
                .get(stack.url("/mobiles/13800138000/count/"))
                .header("X-Request-Id", bad),
        )
        .await;
        let got = reply.header("x-request-id").expect("an id").to_owned();
        assert_ne!(got, bad);
        assert!(
            got.len() == 32 && got.bytes().all(|b| b.is_ascii_hexdigit()),
            "{got}"
        );
    }
    // Static files and nginx's own errors carry one too.
    for path in ["/", "/nope"] {
        let reply = Reply::of(client.get(stack.url(path))).await;
        assert!(
            reply.header("x-request-id").is_some_and(|v| v.len() == 32),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_with_safe_headers() {
    let stack = Stack::start().await;
    let client = harness::http_client();
    let web = workspace_root().join("deploy/web");
    for (path, file, content_type) in [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/index.html", "index.html", "text/html; charset=utf-8"),
        (
            "/register.js",
            "register.js",
            "application/javascript; charset=utf-8",
        ),
        ("/style.css", "style.css", "text/css; charset=utf-8"),
    ] {
        let reply = Reply::of(client.get(stack.url(path))).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.content_type, content_type, "{path}");
        assert_eq!(
            reply.body,
            std::fs::read(web.join(file)).expect("the file exists"),
            "{path} is the file"
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("cache-control"), Some("no-cache"));
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'self'"), "{path}: CSP {csp}");
    }
    // Byte ranges are off: a Range past the end (nginx's HTML 416 before) or a multi-range
    // (a multipart body) gets the whole file, 200.
    for (path, file) in [
        ("/register.js", "register.js"),
        ("/openapi.json", "openapi.json"),
    ] {
        for range in ["bytes=999999-", "bytes=0-1,3-4", "bytes=0-9"] {
            let reply = Reply::of(client.get(stack.url(path)).header("Range", range)).await;
            assert_eq!(
                (reply.status, reply.header("content-range")),
                (200, None),
                "{path} Range: {range}"
            );
            assert_eq!(
                reply.body,
                std::fs::read(web.join(file)).expect("the file exists"),
                "{path} Range: {range} is the whole file"
            );
        }
    }
    let health = Reply::of(client.get(stack.url("/gateway/healthz"))).await;
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );
    // The services' internal endpoints are not routed to the outside.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            Reply::of(client.get(stack.url(path))).await.status,
            404,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_is_a_json_504_and_a_refused_one_a_json_503() {
    // Only nginx: users-svc's address accepts connections and never answers; verifications-svc's
    // address refuses them (nothing listens there).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    // Accept and hold every connection, never answering; the thread ends with the test process.
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in silent.incoming() {
            open.push(stream);
        }
    });
    let refused_port = harness::process::free_port();
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let gateway = crate::stack::spawn_nginx(dir.path(), refused_port, silent_port);
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", gateway.port);
    let client = harness::http_client();

    let started = std::time::Instant::now();
    let reply = Reply::of(client.get(url("/usernames/someone1/count/"))).await;
    reply.assert_refusal(504, "上游服务响应超时，请稍后重试", "5");
    assert!(
        started.elapsed() >= Duration::from_secs(14),
        "the 15 s read timeout applied"
    );

    let reply =
        Reply::of(client.get(url(&format!("/image_codes/{}/", uuid::Uuid::new_v4())))).await;
    reply.assert_refusal(503, "服务暂时不可用，请稍后重试", "5");
    drop(gateway);
}
