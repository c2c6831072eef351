//! The gateway's load shedding: `max_conns` bounds the requests nginx has in flight to one
//! server, and one more is refused at once, before it costs the service anything, with the 503
//! a service answers when it sheds (`Retry-After: 1`). A service that is down keeps its own
//! answer (`Retry-After: 5`, in `gateway.rs`).
//!
//! The slot is held by a real request to the real users-svc, stopped with SIGSTOP: the kernel
//! still accepts nginx's connection, so the request stays in flight, unanswered, for as long as
//! the test wants, and is answered when the process continues.

use std::time::Duration;

use serde_json::json;

use crate::stack::{Options, Reply, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_upstream_is_refused_at_once_with_the_shed_503_and_its_slot_comes_back() {
    let stack = Stack::start_with(Options::default().gateway("USERS_MAX_CONNS", "1")).await;
    let client = harness::http_client();
    let users_port = stack.users.port;
    stack.users.pause();
    let before = established_to(users_port);

    // One lookup takes the lookups' only slot and is held by the stopped users-svc.
    let held = tokio::spawn(Reply::of(
        client.get(stack.url("/usernames/someone1/count/")),
    ));
    wait_for_connections_to(users_port, before + 1).await;

    // The next lookup is refused by nginx itself, without waiting for the held one.
    let refused = Reply::of(client.get(stack.url("/mobiles/13800138000/count/"))).await;
    refused.assert_refusal(503, "服务暂时不可用，请稍后重试", "1");
    assert!(
        stack
            .gateway_error_log()
            .contains("no live upstreams while connecting to upstream"),
        "the refusal was nginx's: {}",
        stack.gateway_error_log()
    );
    assert!(!held.is_finished(), "the held lookup is still in flight");

    // Registrations have their own slots on the same server: one is not refused by the full
    // lookups, it reaches users-svc (a second connection) and waits there too.
    let registration = tokio::spawn(Reply::of(
        client.post(stack.url("/users/")).json(&json!({})),
    ));
    wait_for_connections_to(users_port, before + 2).await;

    stack.users.resume();
    let held = held.await.expect("the held lookup's task");
    assert_eq!(
        (held.status, held.json()),
        (200, json!({"username": "someone1", "count": 0}))
    );
    let registration = registration.await.expect("the registration's task");
    let required = json!(["该字段是必填项。"]);
    assert_eq!(
        (registration.status, registration.json()),
        (
            400,
            json!({"username": required, "password": required, "password2": required,
                   "sms_code": required, "mobile": required, "allow": required})
        )
    );

    // The slot came back with the held lookup's answer.
    let again = Reply::of(client.get(stack.url("/mobiles/13800138000/count/"))).await;
    assert_eq!(
        (again.status, again.json()),
        (200, json!({"mobile": "13800138000", "count": 0}))
    );
}

/// Established TCP connections whose local end is `port` on IPv4 (/proc/net/tcp): on loopback,
/// the connections a listener on `port` has accepted or holds in its accept queue.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp is readable");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local_port = fields
                .next()
                .and_then(|local| local.rsplit(':').next())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            let state = fields.nth(1);
            local_port == Some(port) && state == Some("01")
        })
        .count()
}

/// Wait until `n` connections to `port` are established (nginx has proxied what it holds).
async fn wait_for_connections_to(port: u16, n: usize) {
    for _ in 0..500 {
        if established_to(port) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "nginx did not connect to port {port}: {} connections, {n} expected",
        established_to(port)
    );
}
