//! Client identity behind an extra proxy hop: a real second nginx in front of the gateway (as a
//! host TLS terminator or docker-proxy would be), clients on different loopback addresses. With
//! the gateway's `REAL_IP_FROM` naming that proxy, each client keeps its own limiter key, a
//! forged X-Forwarded-For changes nothing, and the access log holds no mobile, captcha answer
//! or username in full.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::process::{find_binary, free_port, spawn_detached, wait_for_port};

use crate::stack::{Options, Stack, default_nginx_user, http_client_from, random_mobile};

/// An nginx on a free port that forwards everything to `upstream_port`, appending the peer to
/// X-Forwarded-For the way proxies do. Killed when the returned child is dropped by the caller.
fn front_proxy(dir: &Path, upstream_port: u16) -> (u16, std::process::Child) {
    let port = free_port();
    fs::create_dir_all(dir).expect("the proxy folder can be created");
    let d = dir.display();
    let conf = format!(
        "{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream_port};
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
",
        user = default_nginx_user(),
    );
    fs::write(dir.join("nginx.conf"), conf).expect("the proxy config can be written");
    let mut cmd = Command::new(find_binary("nginx", "nginx-light"));
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"));
    let child = spawn_detached(&mut cmd, &dir.join("nginx.log"));
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "the front proxy did not start: {}",
        fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
    (port, child)
}

/// Captcha and SMS code request from `client` through the proxy on `port`.
async fn send_through(
    stack: &Stack,
    client: &reqwest::Client,
    port: u16,
    mobile: &str,
    forged: Option<&str>,
) -> u16 {
    let id = uuid::Uuid::new_v4().to_string();
    let res = client
        .get(format!("http://127.0.0.1:{port}/image_codes/{id}/"))
        .send()
        .await
        .expect("captcha");
    assert_eq!(res.status(), 200);
    let text = stack.captcha_text(&id).await;
    let mut req = client.get(format!(
        "http://127.0.0.1:{port}/sms_codes/{mobile}/?image_code_id={id}&text={text}"
    ));
    if let Some(xff) = forged {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.expect("sms code").status().as_u16()
}

#[tokio::test]
async fn behind_an_extra_proxy_hop_each_client_keeps_its_own_limiter_key() {
    let stack = Stack::start_with(Options {
        real_ip_from: Some("127.0.0.1/32".to_owned()),
        ..Options::default()
    })
    .await;
    let proxy_dir = tempfile::tempdir().expect("tempdir");
    let (port, mut proxy) = front_proxy(proxy_dir.path(), stack.gateway.port);
    let alice = http_client_from("127.0.0.2".parse::<IpAddr>().expect("ip"));
    let bob = http_client_from("127.0.0.3".parse::<IpAddr>().expect("ip"));
    let (m1, m2, m3) = (random_mobile(), random_mobile(), random_mobile());

    assert_eq!(send_through(&stack, &alice, port, &m1, None).await, 200);
    assert_eq!(send_through(&stack, &bob, port, &m2, None).await, 200);
    // A client naming another address gets nothing from it: the proxy appends the real peer,
    // and the gateway takes the rightmost address that is not a trusted proxy.
    assert_eq!(
        send_through(&stack, &alice, port, &m3, Some("198.51.100.99")).await,
        200
    );
    // SIGTERM, not kill(): a SIGKILLed master leaves its worker running, still listening.
    harness::redis::terminate(&mut proxy);

    assert_eq!(
        stack.redis_get("rl:sms_ip:127.0.0.2").await.as_deref(),
        Some("2")
    );
    assert_eq!(
        stack.redis_get("rl:sms_ip:127.0.0.3").await.as_deref(),
        Some("1")
    );
    for shared_key in ["rl:sms_ip:127.0.0.1", "rl:sms_ip:198.51.100.99"] {
        assert_eq!(stack.redis_get(shared_key).await, None, "{shared_key}");
    }

    stack.gateway_access_log_with("key=127.0.0.2 ").await;
    let log = stack.gateway_access_log_with("key=127.0.0.3 ").await;
    assert!(log.contains("key=127.0.0.2 "), "{log}");
    assert!(log.contains("key=127.0.0.3 "), "{log}");
    let masked = format!("/sms_codes/{}****{}/", &m1[..3], &m1[7..]);
    assert!(log.contains(&masked), "{log}");
    for secret in [m1.as_str(), m2.as_str(), "text=", "image_code_id="] {
        assert!(!log.contains(secret), "{secret} in the access log:\n{log}");
    }
}
