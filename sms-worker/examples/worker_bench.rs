//! Load generator for `bench/worker.sh`: queue → sms-worker (release binary) → sms-sandbox.
//!
//! Runs the sandbox in-process (so counting its inbox is free), starts the worker binary
//! against a Redis the script started, and measures:
//! - throughput: N jobs pushed as fast as the shared storage takes them, until all N are in the
//!   inbox, at each provider latency given;
//! - idle latency: one job at a time on an idle worker, push → inbox, p50/p99/max;
//! - failover (`SMS_PROVIDERS=ccp,aliyun`): throughput with the primary down (connection
//!   refused, its breaker open), and push → inbox latency one job at a time before and right
//!   after the primary starts failing (503s: each job pays the failed call until the breaker
//!   opens, then the primary is skipped).
//!
//! Usage: `worker_bench <redis-port> <sms-worker binary> [jobs@0ms] [jobs@200ms] [idle samples]`

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apalis::prelude::TaskSink;
use chrono::Utc;
use shared::config::Env;
use shared::domain::{Mobile, SmsCode};
use shared::jobs::SendSmsCode;
use shared::queue::{QueueSettings, SmsStorage};
use sms_sandbox::{Fault, Sandbox, SandboxConfig};

fn job(i: u64) -> SendSmsCode {
    SendSmsCode {
        mobile: Mobile::parse(&format!("139{:08}", i % 100_000_000)).expect("valid"),
        code: SmsCode::parse(&format!("{:06}", i % 1_000_000)).expect("valid"),
        ttl_minutes: 5,
        template_id: "1".into(),
        request_id: uuid::Uuid::new_v4(),
        created_at: Utc::now(),
    }
}

/// Store the codes of jobs `range` as verifications-svc would (`sms_{mobile}` in db 2, 300 s):
/// the worker sends a job only while the verify-codes Redis still holds its code.
fn store_codes(redis_port: u16, range: std::ops::Range<u64>) {
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{redis_port}/2")).expect("valid URL");
    let mut conn = client.get_connection().expect("bench Redis answers");
    let mut pipe = redis::pipe();
    for i in range {
        let j = job(i);
        pipe.set_ex(shared::keys::sms_code(&j.mobile), j.code.as_str(), 300)
            .ignore();
    }
    pipe.query::<()>(&mut conn).expect("SETEX");
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        harness::process::signal(self.0.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_worker(bin: &str, redis_port: u16, sandbox: &Sandbox) -> Worker {
    start_worker_with(bin, redis_port, sandbox, "ccp", &sandbox.base_url())
}

/// The worker with `providers` (`SMS_PROVIDERS`), CCP at `ccp_url`, Aliyun at the sandbox.
fn start_worker_with(
    bin: &str,
    redis_port: u16,
    sandbox: &Sandbox,
    providers: &str,
    ccp_url: &str,
) -> Worker {
    let c = sandbox.config();
    let child = Command::new(bin)
        .env("PORT", "0")
        .env("RUST_LOG", "warn")
        .env("REDIS_URL", format!("redis://127.0.0.1:{redis_port}/2"))
        .env(
            "QUEUE_REDIS_URL",
            format!("redis://127.0.0.1:{redis_port}/3"),
        )
        .env("SMS_QUEUE", "bench:sms")
        .env("SMS_PROVIDERS", providers)
        .env("CCP_BASE_URL", ccp_url)
        .env("ALIYUN_BASE_URL", sandbox.base_url())
        .env("ALIYUN_ACCESS_KEY_ID", &c.aliyun.access_key_id)
        .env("ALIYUN_ACCESS_KEY_SECRET", &c.aliyun.access_key_secret)
        .env("ALIYUN_SIGN_NAME", &c.aliyun.sign_name)
        .env("ALIYUN_TEMPLATE_CODE", &c.aliyun.template_code)
        .env("CCP_ACCOUNT_SID", &c.account_sid)
        .env("CCP_AUTH_TOKEN", &c.auth_token)
        .env("CCP_APP_ID", &c.app_id)
        .stdin(Stdio::null())
        .spawn()
        .expect("the sms-worker binary starts");
    Worker(child)
}

fn flush(redis_port: u16) {
    for db in [2, 3] {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{redis_port}/{db}")).expect("valid URL");
        let mut conn = client.get_connection().expect("bench Redis answers");
        redis::cmd("FLUSHDB")
            .query::<()>(&mut conn)
            .expect("FLUSHDB");
    }
}

async fn wait_for(sandbox: &Sandbox, n: usize, timeout: Duration) -> Option<(Instant, Instant)> {
    let deadline = Instant::now() + timeout;
    let mut first = None;
    while Instant::now() < deadline {
        let count = sandbox.message_count();
        if count > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if count >= n {
            return Some((first.unwrap_or_else(Instant::now), Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// Push `n` jobs in batches of 500 (one Redis script call each) and time them to the inbox.
async fn throughput(
    storage: &SmsStorage,
    sandbox: &Sandbox,
    start: &dyn Fn() -> Worker,
    redis_port: u16,
    latency_ms: u64,
    n: usize,
) -> f64 {
    flush(redis_port);
    sandbox.reset();
    sandbox.set_latency(Duration::from_millis(latency_ms));
    store_codes(redis_port, 0..n as u64);
    let _worker = start();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let mut pushing = storage.clone();
    let pusher = tokio::spawn(async move {
        let mut i = 0u64;
        let mut left = n;
        while left > 0 {
            let batch = left.min(500);
            let jobs: Vec<SendSmsCode> = (0..batch).map(|k| job(i + k as u64)).collect();
            pushing.push_bulk(jobs).await.expect("queued");
            i += batch as u64;
            left -= batch;
        }
        Instant::now()
    });
    let timeout = Duration::from_secs(30 + (n as u64 * (latency_ms + 1)) / 1000);
    let Some((first, last)) = wait_for(sandbox, n, timeout).await else {
        println!(
            "  latency {latency_ms:>3} ms: TIMEOUT, {} of {n} delivered",
            sandbox.message_count()
        );
        return 0.0;
    };
    let pushed = pusher.await.expect("pusher");
    let total = last - started;
    let rate = n as f64 / total.as_secs_f64();
    let steady = (n - 1) as f64 / (last - first).as_secs_f64().max(1e-9);
    println!(
        "  latency {latency_ms:>3} ms: {n} jobs in {:.2} s = {rate:.0} jobs/s push-to-last \
         (steady {steady:.0} jobs/s first-to-last; push took {:.2} s, first message after {:.0} ms)",
        total.as_secs_f64(),
        (pushed - started).as_secs_f64(),
        (first - started).as_secs_f64() * 1000.0
    );
    let unique: std::collections::HashSet<String> = sandbox
        .messages()
        .into_iter()
        .filter_map(|m| m.req_id)
        .collect();
    assert_eq!(unique.len(), n, "every job delivered exactly once");
    rate
}

async fn idle_latency(
    storage: &SmsStorage,
    sandbox: &Sandbox,
    worker_bin: &str,
    redis_port: u16,
    samples: usize,
) -> (f64, f64, f64) {
    flush(redis_port);
    sandbox.reset();
    store_codes(redis_port, 0..2 * samples as u64);
    let _worker = start_worker(worker_bin, redis_port, sandbox);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ms = one_at_a_time(storage, sandbox, 0, samples).await;
    percentiles(ms)
}

/// p50, p99 and max of `ms`.
fn percentiles(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    (pct(0.5), pct(0.99), ms[ms.len() - 1])
}

/// Push → inbox of `samples` jobs pushed one at a time (jobs numbered from `from`), in ms.
async fn one_at_a_time(
    storage: &SmsStorage,
    sandbox: &Sandbox,
    from: usize,
    samples: usize,
) -> Vec<f64> {
    let mut storage = storage.clone();
    let mut ms = Vec::with_capacity(samples);
    for i in from..from + samples {
        let before = sandbox.message_count();
        let t0 = Instant::now();
        storage.push(job(i as u64)).await.expect("queued");
        wait_for(sandbox, before + 1, Duration::from_secs(10))
            .await
            .expect("delivered");
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        // Idle gaps of varying length, so pushes land at every phase of the poll interval.
        tokio::time::sleep(Duration::from_millis(20 + (i as u64 * 37) % 80)).await;
    }
    ms
}

/// Push → inbox one job at a time with `ccp,aliyun`: `samples` with both healthy, then CCP
/// answers 503 to everything: the first jobs after that pay the failed call, until the breaker
/// opens (5 failures) and CCP is skipped. Prints p50/p99 of each phase.
async fn failover_latency(
    storage: &SmsStorage,
    sandbox: &Sandbox,
    worker_bin: &str,
    redis_port: u16,
    samples: usize,
) {
    flush(redis_port);
    sandbox.reset();
    store_codes(redis_port, 0..2 * samples as u64);
    let _worker = start_worker_with(
        worker_bin,
        redis_port,
        sandbox,
        "ccp,aliyun",
        &sandbox.base_url(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = one_at_a_time(storage, sandbox, 0, samples).await;
    sandbox.inject(Fault::http_status(u32::MAX, 503).on("ccp"));
    let after = one_at_a_time(storage, sandbox, samples, samples).await;
    let failing: Vec<f64> = after.iter().take(5).copied().collect();
    let skipped: Vec<f64> = after.iter().skip(5).copied().collect();
    let carriers: std::collections::BTreeMap<String, usize> =
        sandbox
            .messages()
            .into_iter()
            .fold(Default::default(), |mut m, msg| {
                *m.entry(msg.provider).or_default() += 1;
                m
            });
    for (label, ms) in [
        ("primary healthy", before),
        ("first 5 after the primary fails (each pays a 503)", failing),
        ("after that (breaker open, primary skipped)", skipped),
    ] {
        let (p50, p99, max) = percentiles(ms);
        println!("  {label}: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
    }
    println!("  carried by: {carriers:?}");
}

/// A loopback port nothing listens on: a provider that is down.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let redis_port: u16 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .expect("redis port");
    let worker_bin = args.get(2).expect("sms-worker binary").clone();
    let n0: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let n200: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(1_600);
    let samples: usize = args.get(5).and_then(|a| a.parse().ok()).unwrap_or(200);

    let _ = rustls::crypto::ring::default_provider().install_default();
    let sandbox = Sandbox::start(SandboxConfig::random()).await;
    let settings = QueueSettings::from_env(&mut Env::from_vars([
        (
            "QUEUE_REDIS_URL",
            format!("redis://127.0.0.1:{redis_port}/3"),
        ),
        ("SMS_QUEUE", "bench:sms".to_owned()),
    ]));
    let storage = settings.storage(settings.connection().expect("queue connection"));

    println!(
        "throughput, queue → worker → sandbox (concurrency {}):",
        std::env::var("SMS_WORKER_CONCURRENCY").unwrap_or_else(|_| "32".into())
    );
    let ccp = || start_worker(&worker_bin, redis_port, &sandbox);
    let r0 = throughput(&storage, &sandbox, &ccp, redis_port, 0, n0).await;
    let r200 = throughput(&storage, &sandbox, &ccp, redis_port, 200, n200).await;
    println!(
        "failover, SMS_PROVIDERS=ccp,aliyun with CCP down (connection refused, breaker open):"
    );
    let down = closed_port_url();
    let failover = || start_worker_with(&worker_bin, redis_port, &sandbox, "ccp,aliyun", &down);
    let r_down = throughput(&storage, &sandbox, &failover, redis_port, 0, n0).await;
    println!("failover latency, push → inbox one at a time ({samples} samples per phase):");
    failover_latency(&storage, &sandbox, &worker_bin, redis_port, samples).await;
    println!("idle latency, push → inbox ({samples} samples, one at a time):");
    let (p50, p99, max) = idle_latency(&storage, &sandbox, &worker_bin, redis_port, samples).await;
    println!("  p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "goal ≥ 5000 jobs/s @ 0 ms: {r0:.0} — {}",
        verdict(r0 >= 5000.0)
    );
    println!(
        "goal ≥ 150 jobs/s @ 200 ms: {r200:.0} — {}",
        verdict(r200 >= 150.0)
    );
    println!(
        "goal idle p99 < 500 ms: {p99:.1} ms — {}",
        verdict(p99 < 500.0)
    );
    println!("primary down, second provider: {r_down:.0} jobs/s (vs {r0:.0} with the primary up)");
}
