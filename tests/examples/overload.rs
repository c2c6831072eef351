//! The load driver of `bench/overload.sh`: for each endpoint, its capacity (closed loop), then
//! an open-loop load at 2× and 5× that capacity, and what the clients saw.
//!
//! A benchmark, not a test: it asserts nothing, it reports. The goal per endpoint and factor
//! (issue "no user-visible errors", item 6): beyond capacity only 429/503 with `Retry-After`
//! (no other 5xx, no request left without an answer), goodput at least 90% of capacity, and
//! the latency of admitted requests bounded.
//!
//! | variable | meaning |
//! |---|---|
//! | `GATEWAY` | `http://127.0.0.1:PORT` of the nginx gateway |
//! | `REDIS_URL` | the verify-codes database: fixtures are written there (see below) |
//! | `ENDPOINTS` | which, in order (default `counts,image_codes,sms_codes,register`) |
//! | `FACTORS` | the multiples of capacity to offer (default `2,5`) |
//! | `CAPACITY_SECS`, `LOAD_SECS` | seconds of the closed-loop and of each open-loop phase (default 5 and 10) |
//! | `CONCURRENCY` | closed-loop clients while measuring capacity (default 64) |
//! | `BOUND_MS`, `REGISTER_BOUND_MS` | the latency bound of admitted requests (default 1000, and 5000 for registrations: `HASH_MAX_WAIT_MS` 3000 plus hashing) |
//!
//! Fixtures, so each endpoint is measured alone: `sms_codes` gets captchas the driver stores
//! itself (`img_{uuid}`, as a person who read the picture would answer), `register` gets SMS
//! codes stored as verifications-svc stores them (`sms_{mobile}`). Latency is measured from the
//! moment a request was due, not sent, so a driver that falls behind shows up as latency
//! instead of hiding it (coordinated omission).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

const CAPTCHA: &str = "ab12";
const SMS_CODE: &str = "246810";
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Counts,
    ImageCodes,
    SmsCodes,
    Register,
}

impl Endpoint {
    fn parse(name: &str) -> anyhow::Result<Self> {
        Ok(match name.trim() {
            "counts" => Self::Counts,
            "image_codes" => Self::ImageCodes,
            "sms_codes" => Self::SmsCodes,
            "register" => Self::Register,
            other => anyhow::bail!("unknown endpoint {other:?}"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Counts => "counts",
            Self::ImageCodes => "image_codes",
            Self::SmsCodes => "sms_codes",
            Self::Register => "register",
        }
    }

    fn success(self) -> u16 {
        if self == Self::Register { 201 } else { 200 }
    }
}

#[derive(Debug)]
struct Settings {
    gateway: String,
    redis_url: String,
    endpoints: Vec<Endpoint>,
    factors: Vec<f64>,
    capacity_secs: f64,
    load_secs: f64,
    concurrency: usize,
    bound_ms: f64,
    register_bound_ms: f64,
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .map_err(|_| anyhow::anyhow!("{name} must be set (see bench/overload.sh)"))
        };
        let endpoints = std::env::var("ENDPOINTS")
            .unwrap_or_else(|_| "counts,image_codes,sms_codes,register".to_owned())
            .split(',')
            .map(Endpoint::parse)
            .collect::<anyhow::Result<_>>()?;
        let factors = std::env::var("FACTORS")
            .unwrap_or_else(|_| "2,5".to_owned())
            .split(',')
            .map(|f| f.trim().parse::<f64>())
            .collect::<Result<_, _>>()?;
        Ok(Self {
            gateway: var("GATEWAY")?,
            redis_url: var("REDIS_URL")?,
            endpoints,
            factors,
            capacity_secs: env_f64("CAPACITY_SECS", 5.0),
            load_secs: env_f64("LOAD_SECS", 10.0),
            concurrency: env_f64("CONCURRENCY", 64.0) as usize,
            bound_ms: env_f64("BOUND_MS", 1000.0),
            register_bound_ms: env_f64("REGISTER_BOUND_MS", 5000.0),
        })
    }

    fn bound(&self, endpoint: Endpoint) -> f64 {
        if endpoint == Endpoint::Register {
            self.register_bound_ms
        } else {
            self.bound_ms
        }
    }
}

/// One answer: status (0: none came, or it came after [`TIMEOUT`]), whether a 429/503 carried
/// `Retry-After`, and milliseconds from when the request was due.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    retry_after: bool,
    ms: f64,
}

/// What every request shares: the client, and a serial number that keeps every username,
/// mobile and captcha id of the run unique.
struct Driver {
    settings: Settings,
    http: reqwest::Client,
    redis: redis::aio::MultiplexedConnection,
    serial: AtomicU64,
}

impl Driver {
    /// The fixtures `n` requests of `endpoint` need, from serial number `first` on.
    async fn prepare(&self, endpoint: Endpoint, first: u64, n: u64) -> anyhow::Result<()> {
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        for i in first..first + n {
            match endpoint {
                Endpoint::SmsCodes => pipe.set_ex(format!("img_{}", captcha_id(i)), CAPTCHA, 900),
                Endpoint::Register => pipe.set_ex(format!("sms_{}", mobile(i)), SMS_CODE, 900),
                Endpoint::Counts | Endpoint::ImageCodes => return Ok(()),
            };
            if pipe.len() >= 1000 {
                pipe.query_async::<()>(&mut redis).await?;
                pipe = redis::pipe();
            }
        }
        pipe.query_async::<()>(&mut redis).await?;
        Ok(())
    }

    /// The request number `n` of `endpoint`.
    fn request(&self, endpoint: Endpoint, n: u64) -> reqwest::RequestBuilder {
        let gw = &self.settings.gateway;
        match endpoint {
            Endpoint::Counts if n.is_multiple_of(2) => {
                self.http.get(format!("{gw}/usernames/nobody{n:08}/count/"))
            }
            Endpoint::Counts => self.http.get(format!("{gw}/mobiles/139{n:08}/count/")),
            Endpoint::ImageCodes => self
                .http
                .get(format!("{gw}/image_codes/{}/", uuid::Uuid::new_v4())),
            Endpoint::SmsCodes => self.http.get(format!(
                "{gw}/sms_codes/{}/?image_code_id={}&text={CAPTCHA}",
                mobile(n),
                captcha_id(n)
            )),
            Endpoint::Register => self.http.post(format!("{gw}/users/")).json(&json!({
                "username": format!("ov{n:010}"), "password": "password123",
                "password2": "password123", "sms_code": SMS_CODE, "mobile": mobile(n),
                "allow": "true"})),
        }
    }

    /// Send request `n`, due at `due`; what came back.
    async fn call(&self, endpoint: Endpoint, n: u64, due: Instant) -> Answer {
        let answer = tokio::time::timeout(TIMEOUT, self.request(endpoint, n).send()).await;
        let (status, retry_after) = match answer {
            Ok(Ok(res)) => {
                let status = res.status().as_u16();
                let retry_after = res.headers().contains_key("retry-after");
                // Read the body: the answer is complete only then.
                let complete = tokio::time::timeout(TIMEOUT, res.bytes()).await;
                if matches!(complete, Ok(Ok(_))) {
                    (status, retry_after)
                } else {
                    (0, false)
                }
            }
            _ => (0, false),
        };
        Answer {
            status,
            retry_after,
            ms: due.elapsed().as_secs_f64() * 1000.0,
        }
    }

    fn serials(&self, n: u64) -> u64 {
        self.serial.fetch_add(n, Ordering::Relaxed)
    }
}

/// A mobile unique to serial `n`: 1 + [5-9] + 9 digits.
fn mobile(n: u64) -> String {
    format!("1{}{:09}", 5 + (n % 5), n % 1_000_000_000)
}

/// A captcha id unique to serial `n`, in the UUID form the route accepts.
fn captcha_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Closed loop: `concurrency` clients, each sending its next request when the last one is
/// answered, for `secs`. Every answer.
async fn closed_loop(driver: &Arc<Driver>, endpoint: Endpoint, secs: f64) -> Vec<Answer> {
    let per_client = estimate(endpoint, secs) / driver.settings.concurrency as u64 + 1;
    let mut clients = tokio::task::JoinSet::new();
    let mut ranges = Vec::new();
    for _ in 0..driver.settings.concurrency {
        let first = driver.serials(per_client);
        if let Err(e) = driver.prepare(endpoint, first, per_client).await {
            eprintln!("[overload] cannot store the fixtures: {e:#}");
            return Vec::new();
        }
        ranges.push(first);
    }
    let end = Instant::now() + Duration::from_secs_f64(secs);
    for first in ranges {
        let driver = driver.clone();
        clients.spawn(async move {
            let mut answers = Vec::new();
            for n in first..first + per_client {
                if Instant::now() >= end {
                    break;
                }
                answers.push(driver.call(endpoint, n, Instant::now()).await);
            }
            answers
        });
    }
    let mut all = Vec::new();
    while let Some(answers) = clients.join_next().await {
        all.extend(answers.unwrap_or_default());
    }
    all
}

/// An upper bound on how many requests a closed loop of `secs` can send (the fixtures it
/// needs): far above what two cores answer.
fn estimate(endpoint: Endpoint, secs: f64) -> u64 {
    let per_sec = match endpoint {
        Endpoint::Register => 1_000.0,
        Endpoint::SmsCodes => 10_000.0,
        Endpoint::Counts | Endpoint::ImageCodes => 50_000.0,
    };
    (per_sec * secs) as u64
}

/// Open loop: request `i` is due at `i / rate` seconds, whether or not earlier ones were
/// answered (as independent users arrive). Every answer, and the seconds the driver took to
/// send them all (more than `secs`: the driver, not the stack, was the limit).
async fn open_loop(
    driver: &Arc<Driver>,
    endpoint: Endpoint,
    rate: f64,
    secs: f64,
) -> (Vec<Answer>, f64) {
    let total = (rate * secs).round() as u64;
    let first = driver.serials(total);
    if let Err(e) = driver.prepare(endpoint, first, total).await {
        eprintln!("[overload] cannot store the fixtures: {e:#}");
        return (Vec::new(), 0.0);
    }
    let start = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    let mut all = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let driver = driver.clone();
        requests.spawn(async move { driver.call(endpoint, first + i, due).await });
        while let Some(answer) = requests.try_join_next() {
            all.extend(answer.ok());
        }
    }
    let sending = start.elapsed().as_secs_f64();
    while let Some(answer) = requests.join_next().await {
        all.extend(answer.ok());
    }
    (all, sending)
}

/// What one phase's answers add up to.
struct Summary {
    by_status: BTreeMap<u16, usize>,
    admitted: usize,
    /// 429/503 with `Retry-After`: the refusals a client knows how to handle.
    refused: usize,
    /// Anything else: other statuses, a refusal without `Retry-After`, no answer.
    bad: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn summarize(endpoint: Endpoint, answers: &[Answer]) -> Summary {
    let mut by_status = BTreeMap::new();
    let (mut admitted, mut refused, mut bad) = (0, 0, 0);
    let mut ms = Vec::new();
    for a in answers {
        *by_status.entry(a.status).or_insert(0) += 1;
        if a.status == endpoint.success() {
            admitted += 1;
            ms.push(a.ms);
        } else if matches!(a.status, 429 | 503) && a.retry_after {
            refused += 1;
        } else {
            bad += 1;
        }
    }
    ms.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        if ms.is_empty() {
            f64::NAN
        } else {
            ms[(((ms.len() - 1) as f64) * p).round() as usize]
        }
    };
    Summary {
        by_status,
        admitted,
        refused,
        bad,
        p50: pick(0.50),
        p99: pick(0.99),
        max: pick(1.0),
    }
}

fn statuses(s: &Summary) -> String {
    s.by_status
        .iter()
        .map(|(status, n)| match status {
            0 => format!("{n}×none"),
            _ => format!("{n}×{status}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One endpoint: capacity, then each factor; prints its rows; (passed, failed).
async fn measure(driver: &Arc<Driver>, endpoint: Endpoint) -> anyhow::Result<(usize, usize)> {
    let s = &driver.settings;
    let name = endpoint.name();
    eprintln!(
        "[overload] {name}: capacity, closed loop of {} for {} s",
        s.concurrency, s.capacity_secs
    );
    let answers = closed_loop(driver, endpoint, s.capacity_secs).await;
    let base = summarize(endpoint, &answers);
    let capacity = base.admitted as f64 / s.capacity_secs;
    println!(
        "| {name} | capacity (closed loop c{}) | - | {capacity:.0} | 100% | {} | {} | {:.1}/{:.1}/{:.1} | - |",
        s.concurrency,
        statuses(&base),
        base.bad,
        base.p50,
        base.p99,
        base.max
    );
    let (mut passed, mut failed) = (0, 0);
    for factor in &s.factors {
        let rate = capacity * factor;
        eprintln!(
            "[overload] {name}: {factor}× = {rate:.0} req/s for {} s",
            s.load_secs
        );
        let started = Instant::now();
        let (answers, sending) = open_loop(driver, endpoint, rate, s.load_secs).await;
        let took = started.elapsed().as_secs_f64();
        // A driver that could not keep the schedule measured itself: no verdict.
        let driver_bound = sending > s.load_secs * 1.1;
        let sum = summarize(endpoint, &answers);
        let goodput = sum.admitted as f64 / s.load_secs;
        let share = if capacity > 0.0 {
            goodput / capacity
        } else {
            0.0
        };
        let bounded = sum.admitted == 0 || sum.p99 <= s.bound(endpoint);
        let ok = sum.bad == 0 && share >= 0.9 && bounded;
        let verdict = if driver_bound {
            format!(
                "no verdict: the driver needed {sending:.1} s to send {:.0} s of load",
                s.load_secs
            )
        } else if ok {
            passed += 1;
            "pass".to_owned()
        } else {
            failed += 1;
            "FAIL".to_owned()
        };
        println!(
            "| {name} | {factor}× open loop | {rate:.0} | {goodput:.0} | {:.0}% | {} | {} | {:.1}/{:.1}/{:.1} | {} (refused {}, answered within {took:.1} s) |",
            share * 100.0,
            statuses(&sum),
            sum.bad,
            sum.p50,
            sum.p99,
            sum.max,
            verdict,
            sum.refused,
        );
    }
    Ok((passed, failed))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let redis = redis::Client::open(settings.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let http = harness::http_client();
    let driver = Arc::new(Driver {
        settings,
        http,
        redis,
        serial: AtomicU64::new(0),
    });
    let bounds = format!(
        "{} ms ({} ms for register)",
        driver.settings.bound_ms, driver.settings.register_bound_ms
    );
    println!(
        "\n| endpoint | phase | offered req/s | goodput req/s | of capacity | answers by status | other than 2xx or 429/503+Retry-After | admitted p50/p99/max ms (from due time) | verdict |"
    );
    println!("|---|---|---:|---:|---:|---|---:|---|---|");
    let (mut passed, mut failed) = (0, 0);
    for endpoint in driver.settings.endpoints.clone() {
        let (p, f) = measure(&driver, endpoint).await?;
        passed += p;
        failed += f;
    }
    println!(
        "\ngoal per phase: no answer other than 2xx or 429/503 + Retry-After, goodput ≥ 90% of capacity, admitted p99 ≤ {bounds}"
    );
    println!(
        "\noverload: {passed} passed, {failed} failed (phases the driver could not keep up with have no verdict)"
    );
    Ok(())
}
