//! The load driver of `bench/faults.sh`: a steady sign-up funnel plus count traffic through the
//! gateway at a fixed (open-loop) rate, while the script's fault commands run at fixed times.
//! It prints, per fault and overall, what users saw and what happened to their SMS codes.
//!
//! A benchmark, not a test: it asserts nothing, it reports. `bench/faults.sh` builds it in
//! release mode, starts the stack and passes everything through the environment:
//!
//! | variable | meaning |
//! |---|---|
//! | `GATEWAY` | `http://127.0.0.1:PORT` of the nginx gateway |
//! | `SANDBOX` | `http://127.0.0.1:PORT` of the sms-sandbox (the inbox the funnel reads codes from) |
//! | `REDIS_URL` | the verify-codes database: the driver reads a captcha's answer from `img_{uuid}` (a person reads the picture) |
//! | `FUNNELS_PER_SEC`, `COUNTS_PER_SEC` | the load (default 10 and 500) |
//! | `WARMUP_SECS`, `CALM_SECS`, `FAULT_SECS` | seconds before the first fault, between the end of one fault window and the next injection, of each fault window (default 20, 10, 30) |
//! | `FAULTS` | `name=shell command` pairs separated by `;`, run in order with `bash -c` |
//! | `CODE_WAIT_SECS` | how long a funnel waits for its code in the inbox (default 90) |
//!
//! A funnel is what one new user does: `GET /image_codes/{uuid}/`, `GET /sms_codes/{mobile}/`,
//! the code from the inbox, `POST /users/`, `GET /usernames/{name}/count/`. Each request is
//! recorded with its start time, status, whether a 503 carried `Retry-After`, and latency.

mod report;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{Value, json};

use report::{env_f64, quantile, statuses};

/// One request as the user saw it.
#[derive(Debug, Clone)]
struct Record {
    /// Seconds since the run started, when the request was sent.
    at: f64,
    endpoint: &'static str,
    /// HTTP status; 0 when no answer came (connection refused or reset, timeout).
    status: u16,
    retry_after: bool,
    latency_ms: f64,
}

/// The fate of one accepted SMS request.
#[derive(Debug, Clone)]
struct Sms {
    at: f64,
    mobile: String,
    /// Seconds from acceptance to the code in the inbox; `None`: never arrived.
    delivered_after: Option<f64>,
}

#[derive(Debug, Clone)]
struct Settings {
    gateway: String,
    sandbox: String,
    redis_url: String,
    funnels_per_sec: f64,
    counts_per_sec: f64,
    warmup: f64,
    calm: f64,
    fault: f64,
    code_wait: f64,
    faults: Vec<(String, String)>,
}

fn env_string(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| anyhow::anyhow!("{name} must be set (see bench/faults.sh)"))
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let faults = std::env::var("FAULTS")
            .unwrap_or_default()
            .split(';')
            .filter(|s| !s.trim().is_empty())
            .map(|pair| {
                let (name, cmd) = pair.split_once('=').unwrap_or((pair, pair));
                (name.trim().to_owned(), cmd.trim().to_owned())
            })
            .collect();
        Ok(Self {
            gateway: env_string("GATEWAY")?,
            sandbox: env_string("SANDBOX")?,
            redis_url: env_string("REDIS_URL")?,
            funnels_per_sec: env_f64("FUNNELS_PER_SEC", 10.0),
            counts_per_sec: env_f64("COUNTS_PER_SEC", 500.0),
            warmup: env_f64("WARMUP_SECS", 20.0),
            calm: env_f64("CALM_SECS", 10.0),
            fault: env_f64("FAULT_SECS", 30.0),
            code_wait: env_f64("CODE_WAIT_SECS", 90.0),
            faults,
        })
    }

    /// When fault `i` is injected, in seconds since the start.
    fn injection_at(&self, i: usize) -> f64 {
        self.warmup + i as f64 * (self.fault + self.calm)
    }

    /// How long the load runs: the warm-up, then each fault's window and the calm after it.
    fn duration(&self) -> f64 {
        self.injection_at(self.faults.len())
    }
}

/// What every task shares.
#[derive(Debug)]
struct Run {
    settings: Settings,
    http: reqwest::Client,
    /// Reconnects by itself after a Redis restart (a fault this driver injects).
    redis: redis::aio::ConnectionManager,
    start: Instant,
    records: Mutex<Vec<Record>>,
    sms: Mutex<Vec<Sms>>,
    serial: AtomicU64,
    /// A client that keeps no connection open: each request on a new one.
    fresh: reqwest::Client,
    /// Requests sent a second time because the gateway closed their kept-alive connection
    /// without answering (see [`closed_unanswered`]).
    resent: AtomicU64,
}

/// Whether the connection closed before any answer came: what a client sees when it reuses a
/// kept-alive connection just as nginx closes it (an old worker after a reload closes its idle
/// connections). The request was never read, so browsers send it again on a new connection,
/// whatever its method (RFC 9112 §9.3.1); so does this driver, once, and counts it.
fn closed_unanswered(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            )
        {
            return true;
        }
        // hyper's IncompleteMessage, which it exposes only through its text.
        if err.to_string() == "connection closed before message completed" {
            return true;
        }
        source = err.source();
    }
    false
}

impl Run {
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Send one request and record what came back; the body when the status was `expect`.
    async fn call(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
        expect: u16,
    ) -> Option<Value> {
        let at = self.now();
        let sent = Instant::now();
        let again = request.try_clone();
        let mut result = request.timeout(Duration::from_secs(10)).send().await;
        if let (Err(e), Some(again)) = (&result, again)
            && closed_unanswered(e)
        {
            self.resent.fetch_add(1, Ordering::Relaxed);
            // On a new connection, as a browser does: the pool's other idle connections to the
            // old worker are being closed too.
            result = match again.timeout(Duration::from_secs(10)).build() {
                Ok(request) => self.fresh.execute(request).await,
                Err(e) => Err(e),
            };
        }
        let (status, retry_after, body) = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let body = if status == expect {
                    response.json::<Value>().await.ok()
                } else {
                    None
                };
                (status, retry_after, body)
            }
            Err(_) => (0, false, None),
        };
        let latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
        self.records.lock().expect("records lock").push(Record {
            at,
            endpoint,
            status,
            retry_after,
            latency_ms,
        });
        if status == expect {
            Some(body.unwrap_or(Value::Null))
        } else {
            None
        }
    }

    /// The captcha's answer, as a person would read it off the picture. Retried: this is the
    /// driver's own shortcut, not a user request (it also fails while Redis restarts).
    async fn captcha_answer(&self, id: &str) -> Option<String> {
        let mut redis = self.redis.clone();
        for _ in 0..50 {
            match redis.get::<_, Option<String>>(format!("img_{id}")).await {
                Ok(answer) => return answer,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        None
    }

    /// Poll the sandbox inbox until `mobile` has a message; its code.
    async fn code_from_inbox(&self, mobile: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs_f64(self.settings.code_wait);
        let url = format!("{}/messages?mobile={mobile}", self.settings.sandbox);
        while Instant::now() < deadline {
            let inbox = self.http.get(&url).send().await.ok()?;
            if let Ok(Value::Array(messages)) = inbox.json::<Value>().await
                && let Some(code) = messages
                    .first()
                    .and_then(|m| m.pointer("/datas/0"))
                    .and_then(Value::as_str)
            {
                return Some(code.to_owned());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    }
}

/// One new user, start to finish; stops at the first step that fails (as a user would give up).
async fn funnel(run: Arc<Run>) {
    let n = run.serial.fetch_add(1, Ordering::Relaxed);
    let gw = &run.settings.gateway;
    let id = uuid::Uuid::new_v4().to_string();
    let image = run.http.get(format!("{gw}/image_codes/{id}/"));
    if run.call("image_codes", image, 200).await.is_none() {
        return;
    }
    let Some(text) = run.captcha_answer(&id).await else {
        return;
    };
    // Unique per run and per funnel: 1 + [5-9] + 9 digits.
    let mobile = format!("1{}{:09}", 5 + (n % 5), n);
    // A UUID and four letters or digits need no percent-encoding.
    let sms = run.http.get(format!(
        "{gw}/sms_codes/{mobile}/?image_code_id={id}&text={text}"
    ));
    let accepted_at = run.now();
    if run.call("sms_codes", sms, 200).await.is_none() {
        return;
    }
    let code = run.code_from_inbox(&mobile).await;
    let delivered_after = code.as_ref().map(|_| run.now() - accepted_at);
    run.sms.lock().expect("sms lock").push(Sms {
        at: accepted_at,
        mobile: mobile.clone(),
        delivered_after,
    });
    let Some(code) = code else { return };
    let username = format!("fault{n:09}");
    let body = json!({"username": username, "password": "password123", "password2": "password123",
        "sms_code": code, "mobile": mobile, "allow": "true"});
    let register = run.http.post(format!("{gw}/users/")).json(&body);
    if run.call("register", register, 201).await.is_none() {
        return;
    }
    let count = run.http.get(format!("{gw}/usernames/{username}/count/"));
    run.call("username_count", count, 200).await;
}

/// One availability lookup, alternating usernames and mobiles nobody registered.
async fn count(run: Arc<Run>) {
    let n = run.serial.fetch_add(1, Ordering::Relaxed);
    let gw = &run.settings.gateway;
    let request = if n.is_multiple_of(2) {
        run.http.get(format!("{gw}/usernames/nobody{n:08}/count/"))
    } else {
        run.http.get(format!("{gw}/mobiles/139{n:08}/count/"))
    };
    run.call("counts", request, 200).await;
}

/// Start `task` `per_sec` times a second until `until` seconds, on schedule whatever the
/// answers take (open loop: a slow system gets more requests in flight, as with real users).
async fn drive<F, Fut>(run: Arc<Run>, per_sec: f64, until: f64, task: F)
where
    F: Fn(Arc<Run>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if per_sec <= 0.0 {
        return;
    }
    let period = Duration::from_secs_f64(1.0 / per_sec);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    while run.now() < until {
        ticks.tick().await;
        tasks.spawn(task(run.clone()));
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Run each fault's command at its time; returns (name, injected at, seconds the command took).
async fn inject(run: Arc<Run>) -> Vec<(String, f64, f64)> {
    let mut done = Vec::new();
    for (i, (name, command)) in run.settings.faults.iter().enumerate() {
        let at = run.settings.injection_at(i);
        let wait = at - run.now();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
        eprintln!("[faults] t={:.1}s inject {name}: {command}", run.now());
        let started = run.now();
        let status = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(command)
            .status()
            .await;
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("[faults] the command of {name} failed: {status:?}");
        }
        done.push((name.clone(), started, run.now() - started));
    }
    done
}

const ENDPOINTS: [&str; 5] = [
    "image_codes",
    "sms_codes",
    "register",
    "username_count",
    "counts",
];

fn expected(endpoint: &str) -> u16 {
    if endpoint == "register" { 201 } else { 200 }
}

/// What users saw in one time window.
#[derive(Debug, Default)]
struct Window {
    total: usize,
    by_status: std::collections::BTreeMap<u16, usize>,
    /// 5xx other than a 503 with Retry-After, plus requests that got no answer at all.
    bad_5xx: usize,
    refused_503: usize,
    /// The 503s by endpoint, to tell a dependency's downtime from a refusal of one step.
    refused_by_endpoint: std::collections::BTreeMap<&'static str, usize>,
    /// Any answer other than the one the step expects (4xx included).
    unexpected: usize,
    /// Seconds from `from` to the end of the last unexpected answer.
    recovery: f64,
}

fn window(records: &[Record], from: f64, to: f64) -> Window {
    let mut w = Window::default();
    for r in records.iter().filter(|r| r.at >= from && r.at < to) {
        w.total += 1;
        *w.by_status.entry(r.status).or_default() += 1;
        if r.status == 0 || (r.status >= 500 && !(r.status == 503 && r.retry_after)) {
            w.bad_5xx += 1;
        }
        if r.status == 503 && r.retry_after {
            w.refused_503 += 1;
            *w.refused_by_endpoint.entry(r.endpoint).or_default() += 1;
        }
        if r.status != expected(r.endpoint) {
            w.unexpected += 1;
            w.recovery = w.recovery.max(r.at + r.latency_ms / 1000.0 - from);
        }
    }
    w
}

/// "p50/p99" of one endpoint's answered requests in a window, in ms.
fn latency(records: &[Record], endpoint: &str, from: f64, to: f64) -> String {
    let mut ms: Vec<f64> = records
        .iter()
        .filter(|r| r.endpoint == endpoint && r.at >= from && r.at < to && r.status != 0)
        .map(|r| r.latency_ms)
        .collect();
    if ms.is_empty() {
        return "-".to_owned();
    }
    ms.sort_by(f64::total_cmp);
    format!("{:.1}/{:.1}", quantile(&ms, 0.50), quantile(&ms, 0.99))
}

/// Answers by status, and the 503s by endpoint.
fn window_statuses(w: &Window) -> String {
    let mut text = statuses(&w.by_status);
    if !w.refused_by_endpoint.is_empty() {
        let by: Vec<String> = w
            .refused_by_endpoint
            .iter()
            .map(|(e, n)| format!("{e} {n}"))
            .collect();
        text.push_str(&format!(" (503: {})", by.join(", ")));
    }
    text
}

/// SMS accepted in [from, to): (accepted, delivered, slowest delivery in seconds).
fn sms_fate(sms: &[Sms], from: f64, to: f64) -> (usize, usize, f64) {
    let accepted: Vec<&Sms> = sms.iter().filter(|s| s.at >= from && s.at < to).collect();
    let delivered: Vec<f64> = accepted.iter().filter_map(|s| s.delivered_after).collect();
    let slowest = delivered.iter().copied().fold(0.0, f64::max);
    (accepted.len(), delivered.len(), slowest)
}

/// Messages per mobile in the inbox beyond the first, and provider calls that repeated an
/// earlier call's request id (stopped only by the provider's own de-duplication).
async fn duplicates(run: &Run) -> anyhow::Result<(usize, usize)> {
    let messages: Vec<Value> = run
        .http
        .get(format!("{}/messages", run.settings.sandbox))
        .send()
        .await?
        .json()
        .await?;
    let mut per_mobile: HashMap<String, usize> = HashMap::new();
    for m in &messages {
        let to = m.get("to").and_then(Value::as_str).unwrap_or_default();
        *per_mobile.entry(to.to_owned()).or_default() += 1;
    }
    let extra_messages = per_mobile.values().map(|n| n.saturating_sub(1)).sum();
    let calls: Vec<Value> = run
        .http
        .get(format!("{}/calls", run.settings.sandbox))
        .send()
        .await?
        .json()
        .await?;
    let mut seen = std::collections::HashSet::new();
    let repeats = calls
        .iter()
        .filter_map(|c| c.get("req_id").and_then(Value::as_str))
        .filter(|id| !seen.insert(id.to_owned()))
        .count();
    Ok((extra_messages, repeats))
}

/// One fault's verdict and its table row.
struct Verdict {
    passed: bool,
    row: String,
}

fn judge(run: &Run, name: &str, at: f64, records: &[Record], sms: &[Sms]) -> Verdict {
    let s = &run.settings;
    let (before, during, after) = (
        (at - s.calm.min(at), at),
        (at, at + s.fault),
        (at + s.fault, at + s.fault + s.calm),
    );
    let w = window(records, during.0, after.1);
    let (accepted, delivered, slowest) = sms_fate(sms, during.0, after.1);
    // A provider outage may refuse (503 + Retry-After); a restart may not.
    let may_refuse = name.contains("outage");
    let passed = w.bad_5xx == 0
        && (may_refuse || w.refused_503 == 0)
        && w.unexpected == w.refused_503
        && accepted == delivered;
    let lat = |e: &str| {
        format!(
            "{} · {} · {}",
            latency(records, e, before.0, before.1),
            latency(records, e, during.0, during.1),
            latency(records, e, after.0, after.1)
        )
    };
    let row = format!(
        "| {name} | {} | {} | {} | {} | {accepted}/{delivered} (slowest {slowest:.1} s) | {:.1} s | {} | {} | {} | {} |",
        if passed { "pass" } else { "FAIL" },
        window_statuses(&w),
        w.bad_5xx,
        w.refused_503,
        w.recovery,
        lat("sms_codes"),
        lat("register"),
        lat("counts"),
        lat("image_codes"),
    );
    Verdict { passed, row }
}

fn report(run: &Run, injected: &[(String, f64, f64)], dups: (usize, usize)) -> (usize, usize) {
    let records = run.records.lock().expect("records lock").clone();
    let sms = run.sms.lock().expect("sms lock").clone();
    println!(
        "\n| fault | verdict | requests by status (injection → end of calm) | 5xx not 503+RA | 503+RA | SMS accepted/delivered | recovery | p50/p99 ms sms_codes before · during · after | register | counts | image_codes |"
    );
    println!("|---|---|---|---:|---:|---|---:|---|---|---|---|");
    let mut results = Vec::new();
    let calm = window(&records, 0.0, run.settings.warmup);
    let (accepted, delivered, _) = sms_fate(&sms, 0.0, run.settings.warmup);
    println!(
        "| warm-up (no fault) | - | {} | {} | {} | {accepted}/{delivered} | - | {} | {} | {} | {} |",
        window_statuses(&calm),
        calm.bad_5xx,
        calm.refused_503,
        latency(&records, "sms_codes", 0.0, run.settings.warmup),
        latency(&records, "register", 0.0, run.settings.warmup),
        latency(&records, "counts", 0.0, run.settings.warmup),
        latency(&records, "image_codes", 0.0, run.settings.warmup),
    );
    for (name, at, took) in injected {
        let v = judge(run, name, *at, &records, &sms);
        println!("{} <!-- command took {took:.1} s -->", v.row);
        results.push(v.passed);
    }
    let all = window(&records, 0.0, f64::MAX);
    let (accepted, delivered, slowest) = sms_fate(&sms, 0.0, f64::MAX);
    println!(
        "\noverall: {} requests: {}",
        all.total,
        window_statuses(&all)
    );
    println!(
        "overall: sent again after the gateway closed a kept-alive connection unanswered (as browsers do): {}",
        run.resent.load(Ordering::Relaxed)
    );
    println!(
        "overall: 5xx other than 503+Retry-After: {} (goal 0); 503+Retry-After: {}; SMS accepted {accepted}, delivered {delivered} (slowest {slowest:.1} s); extra messages to one mobile: {} (goal 0); provider calls repeating a request id: {}",
        all.bad_5xx, all.refused_503, dups.0, dups.1
    );
    let lost: Vec<&str> = sms
        .iter()
        .filter(|s| s.delivered_after.is_none())
        .map(|s| s.mobile.as_str())
        .take(5)
        .collect();
    if !lost.is_empty() {
        println!("overall: codes that never arrived, e.g. {}", lost.join(" "));
    }
    for e in ENDPOINTS {
        println!(
            "overall: {e} p50/p99 ms {}",
            latency(&records, e, 0.0, f64::MAX)
        );
    }
    let mut passed = results.iter().filter(|p| **p).count();
    let mut failed = results.len() - passed;
    // The whole run: nothing lost or duplicated.
    if all.bad_5xx == 0 && accepted == delivered && dups.0 == 0 {
        passed += 1;
    } else {
        failed += 1;
    }
    (passed, failed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let redis = redis::Client::open(settings.redis_url.as_str())?
        .get_connection_manager()
        .await?;
    let end = settings.duration();
    let run = Arc::new(Run {
        http: harness::http_client(),
        redis,
        start: Instant::now(),
        records: Mutex::new(Vec::new()),
        sms: Mutex::new(Vec::new()),
        serial: AtomicU64::new(0),
        resent: AtomicU64::new(0),
        fresh: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()?,
        settings,
    });
    eprintln!("[faults] driving for {end:.0} s");
    let funnels = tokio::spawn(drive(
        run.clone(),
        run.settings.funnels_per_sec,
        end,
        funnel,
    ));
    let counts = tokio::spawn(drive(run.clone(), run.settings.counts_per_sec, end, count));
    let injected = inject(run.clone()).await;
    counts.await?;
    eprintln!("[faults] load stopped; waiting for the last codes and registrations");
    funnels.await?;
    let dups = duplicates(&run).await?;
    let (passed, failed) = report(&run, &injected, dups);
    println!("\nfaults: {passed} passed, {failed} failed");
    Ok(())
}
