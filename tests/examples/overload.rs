//! The load driver of `bench/overload.sh`: its own ceiling, then for each endpoint its capacity
//! (closed loop) and an open-loop load at 2× and 5× that capacity, and what the clients saw.
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
//! | `CONCURRENCY`, `REGISTER_CONCURRENCY` | closed-loop clients while measuring capacity (default 64, and 8 for registrations: more would queue past `HASH_MAX_WAIT_MS` and be refused, undercounting) |
//! | `CONNECTIONS` | keep-alive connections of the open loop (default 1024: above what the gateway lets through, `*_MAX_CONNS`, so the gateway, not the driver, decides what waits) |
//! | `BOUND_MS`, `REGISTER_BOUND_MS` | the latency bound of admitted requests (default 1000, and 5000 for registrations: `HASH_MAX_WAIT_MS` 3000 plus hashing) |
//!
//! The driver is built to not measure itself: a fixed set of HTTP/1.1 keep-alive connections
//! (hyper's low-level client connections, no pool, no per-request allocation of a client), each
//! taking the next due request of a fixed schedule when it is free (wrk2's constant-throughput
//! model). Latency is counted from the moment a request was due, not sent, so a driver or a
//! stack that falls behind shows up as latency instead of hiding it (coordinated omission). Its
//! ceiling (a closed loop on nginx's cheapest answer, `/gateway/healthz`) is printed first; a
//! phase that offers more than 90% of it gets no verdict.
//!
//! Fixtures, so each endpoint is measured alone: `sms_codes` gets captchas the driver stores
//! itself (`img_{uuid}`, as a person who read the picture would answer), `register` gets SMS
//! codes stored as verifications-svc stores them (`sms_{mobile}`).

mod report;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde_json::json;

use report::{env_f64, quantile, statuses};

const CAPTCHA: &str = "ab12";
const SMS_CODE: &str = "246810";
const TIMEOUT: Duration = Duration::from_secs(10);
const CEILING_SECS: f64 = 3.0;
const CEILING_CONNECTIONS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Counts,
    ImageCodes,
    SmsCodes,
    Register,
    /// nginx's own `/gateway/healthz`: the driver's ceiling.
    Ceiling,
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
            Self::Ceiling => "gateway/healthz",
        }
    }

    fn success(self) -> u16 {
        if self == Self::Register { 201 } else { 200 }
    }
}

#[derive(Debug)]
struct Settings {
    gateway: SocketAddr,
    redis_url: String,
    endpoints: Vec<Endpoint>,
    factors: Vec<f64>,
    capacity_secs: f64,
    load_secs: f64,
    concurrency: usize,
    register_concurrency: usize,
    connections: usize,
    bound_ms: f64,
    register_bound_ms: f64,
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
        let gateway = var("GATEWAY")?;
        let gateway = gateway
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("GATEWAY must be http://IP:PORT, not {gateway}"))?
            .trim_end_matches('/')
            .parse()?;
        Ok(Self {
            gateway,
            redis_url: var("REDIS_URL")?,
            endpoints,
            factors,
            capacity_secs: env_f64("CAPACITY_SECS", 5.0),
            load_secs: env_f64("LOAD_SECS", 10.0),
            concurrency: env_f64("CONCURRENCY", 64.0) as usize,
            register_concurrency: env_f64("REGISTER_CONCURRENCY", 8.0) as usize,
            connections: env_f64("CONNECTIONS", 1024.0) as usize,
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

    fn closed_loop_clients(&self, endpoint: Endpoint) -> usize {
        match endpoint {
            Endpoint::Register => self.register_concurrency,
            Endpoint::Ceiling => CEILING_CONNECTIONS,
            _ => self.concurrency,
        }
    }
}

/// One answer: status (0: none came, the connection failed, or it came after [`TIMEOUT`]),
/// whether a 429/503 carried `Retry-After`, milliseconds from when the request was due, and
/// how late the driver sent it.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    retry_after: bool,
    ms: f64,
    lag_ms: f64,
}

/// What every request shares: the gateway's address, the fixtures' Redis, and a serial number
/// that keeps every username, mobile and captcha id of the run unique.
struct Driver {
    settings: Settings,
    host: String,
    redis: redis::aio::MultiplexedConnection,
    serial: AtomicU64,
}

/// One keep-alive connection to the gateway, reopened when the gateway closed it.
struct Connection {
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Drives the socket; ends when either side closes it.
        tokio::spawn(conn);
        Ok(sender)
    }

    /// Send `req` and read the whole answer: (status, whether it had `Retry-After`), or `None`
    /// when the connection failed or the answer took longer than [`TIMEOUT`].
    async fn send(&mut self, addr: SocketAddr, req: Request<Full<Bytes>>) -> Option<(u16, bool)> {
        let exchange = async {
            let usable = match self.sender.as_mut() {
                Some(s) => !s.is_closed() && s.ready().await.is_ok(),
                None => false,
            };
            if !usable {
                self.sender = Some(Self::open(addr).await.ok()?);
            }
            let sender = self.sender.as_mut()?;
            let res = sender.send_request(req).await.ok()?;
            let status = res.status().as_u16();
            let retry_after = res.headers().contains_key(header::RETRY_AFTER);
            // The answer is complete only once its body is.
            res.into_body().collect().await.ok()?;
            Some((status, retry_after))
        };
        let answer = tokio::time::timeout(TIMEOUT, exchange).await.ok().flatten();
        if answer.is_none() {
            self.sender = None;
        }
        answer
    }
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
                _ => return Ok(()),
            };
            if pipe.len() >= 1000 {
                pipe.query_async::<()>(&mut redis).await?;
                pipe = redis::pipe();
            }
        }
        if !pipe.is_empty() {
            pipe.query_async::<()>(&mut redis).await?;
        }
        Ok(())
    }

    /// The request number `n` of `endpoint`.
    fn request(&self, endpoint: Endpoint, n: u64) -> Request<Full<Bytes>> {
        let (method, path, body) = match endpoint {
            Endpoint::Counts if n.is_multiple_of(2) => {
                (Method::GET, format!("/usernames/nobody{n:08}/count/"), None)
            }
            Endpoint::Counts => (Method::GET, format!("/mobiles/139{n:08}/count/"), None),
            Endpoint::ImageCodes => (
                Method::GET,
                format!("/image_codes/{}/", uuid::Uuid::new_v4()),
                None,
            ),
            Endpoint::SmsCodes => (
                Method::GET,
                format!(
                    "/sms_codes/{}/?image_code_id={}&text={CAPTCHA}",
                    mobile(n),
                    captcha_id(n)
                ),
                None,
            ),
            Endpoint::Register => (Method::POST, "/users/".to_owned(), Some(registration(n))),
            Endpoint::Ceiling => (Method::GET, "/gateway/healthz".to_owned(), None),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        req.body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap_or_else(|e| panic!("a request of {} builds: {e}", endpoint.name()))
    }

    /// Send request `n` on `conn`, due at `due`; what came back.
    async fn call(
        &self,
        conn: &mut Connection,
        endpoint: Endpoint,
        n: u64,
        due: Instant,
    ) -> Answer {
        let lag_ms = due.elapsed().as_secs_f64() * 1000.0;
        let answer = conn
            .send(self.settings.gateway, self.request(endpoint, n))
            .await;
        let (status, retry_after) = answer.unwrap_or((0, false));
        Answer {
            status,
            retry_after,
            ms: due.elapsed().as_secs_f64() * 1000.0,
            lag_ms,
        }
    }

    fn serials(&self, n: u64) -> u64 {
        self.serial.fetch_add(n, Ordering::Relaxed)
    }

    /// `n` connections, opened before a phase's clock starts.
    async fn connections(&self, n: usize) -> anyhow::Result<Vec<Connection>> {
        let mut all = Vec::with_capacity(n);
        for _ in 0..n {
            let sender = Connection::open(self.settings.gateway).await?;
            all.push(Connection {
                sender: Some(sender),
            });
        }
        Ok(all)
    }
}

/// The body of registration `n`.
fn registration(n: u64) -> String {
    json!({"username": format!("ov{n:010}"), "password": "password123",
        "password2": "password123", "sms_code": SMS_CODE, "mobile": mobile(n), "allow": "true"})
    .to_string()
}

/// A mobile unique to serial `n`: 1 + [5-9] + 9 digits.
fn mobile(n: u64) -> String {
    format!("1{}{:09}", 5 + (n % 5), n % 1_000_000_000)
}

/// A captcha id unique to serial `n`, in the UUID form the route accepts.
fn captcha_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// How the requests of a phase are due.
#[derive(Debug, Clone, Copy)]
enum Schedule {
    /// Each connection sends its next request when the last one is answered, until the end.
    Closed { end: Instant },
    /// Request `i` is due at `start + i / rate`, whether or not earlier ones were answered (as
    /// independent users arrive); `total` of them.
    Open {
        start: Instant,
        rate: f64,
        total: u64,
    },
}

/// Run one phase on `conns` (each a task taking the next due request when it is free); every
/// answer. Request `i` of the phase uses serial `first + i`.
async fn phase(
    driver: &Arc<Driver>,
    endpoint: Endpoint,
    conns: Vec<Connection>,
    first: u64,
    schedule: Schedule,
) -> Vec<Answer> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let (driver, next) = (driver.clone(), next.clone());
        tasks.spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let due = match schedule {
                    Schedule::Closed { end } if Instant::now() < end => Instant::now(),
                    Schedule::Open { start, rate, total } if i < total => {
                        start + Duration::from_secs_f64(i as f64 / rate)
                    }
                    _ => break,
                };
                if due > Instant::now() {
                    // tokio's timer has 1 ms ticks: a request may go out up to 1 ms after it
                    // was due, which its latency (counted from the due time) includes.
                    tokio::time::sleep_until(due.into()).await;
                }
                answers.push(driver.call(&mut conn, endpoint, first + i, due).await);
            }
            answers
        });
    }
    let mut all = Vec::new();
    while let Some(answers) = tasks.join_next().await {
        all.extend(answers.unwrap_or_default());
    }
    all
}

/// Closed loop for `secs` with the endpoint's number of clients: every answer.
async fn closed_loop(
    driver: &Arc<Driver>,
    endpoint: Endpoint,
    secs: f64,
) -> anyhow::Result<Vec<Answer>> {
    let n = estimate(endpoint, secs);
    let first = driver.serials(n);
    driver.prepare(endpoint, first, n).await?;
    let conns = driver
        .connections(driver.settings.closed_loop_clients(endpoint))
        .await?;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    Ok(phase(driver, endpoint, conns, first, Schedule::Closed { end }).await)
}

/// An upper bound on how many requests a closed loop of `secs` can send (the fixtures it
/// needs): far above what two cores answer.
fn estimate(endpoint: Endpoint, secs: f64) -> u64 {
    let per_sec = match endpoint {
        Endpoint::Register => 1_000.0,
        Endpoint::SmsCodes => 20_000.0,
        _ => 0.0,
    };
    (per_sec * secs) as u64
}

/// Open loop at `rate` for `secs` on the configured connections: every answer.
async fn open_loop(
    driver: &Arc<Driver>,
    endpoint: Endpoint,
    rate: f64,
    secs: f64,
) -> anyhow::Result<Vec<Answer>> {
    let total = (rate * secs).round() as u64;
    let first = driver.serials(total);
    driver.prepare(endpoint, first, total).await?;
    let conns = driver.connections(driver.settings.connections).await?;
    let start = Instant::now() + Duration::from_millis(50);
    let schedule = Schedule::Open { start, rate, total };
    Ok(phase(driver, endpoint, conns, first, schedule).await)
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
    /// p99 of how late the driver sent requests (all of them, admitted or not).
    lag_p99: f64,
    /// Refusals' p99 latency: a refusal must come at once.
    refused_p99: f64,
}

fn summarize(endpoint: Endpoint, answers: &[Answer]) -> Summary {
    let mut by_status = BTreeMap::new();
    let (mut admitted, mut refused, mut bad) = (0, 0, 0);
    let (mut ms, mut refused_ms, mut lag) = (Vec::new(), Vec::new(), Vec::new());
    for a in answers {
        *by_status.entry(a.status).or_insert(0) += 1;
        lag.push(a.lag_ms);
        if a.status == endpoint.success() {
            admitted += 1;
            ms.push(a.ms);
        } else if matches!(a.status, 429 | 503) && a.retry_after {
            refused += 1;
            refused_ms.push(a.ms);
        } else {
            bad += 1;
        }
    }
    for v in [&mut ms, &mut refused_ms, &mut lag] {
        v.sort_by(f64::total_cmp);
    }
    Summary {
        by_status,
        admitted,
        refused,
        bad,
        p50: quantile(&ms, 0.50),
        p99: quantile(&ms, 0.99),
        max: quantile(&ms, 1.0),
        lag_p99: quantile(&lag, 0.99),
        refused_p99: quantile(&refused_ms, 0.99),
    }
}

/// The driver's ceiling: a closed loop on nginx's cheapest answer, req/s.
async fn ceiling(driver: &Arc<Driver>) -> anyhow::Result<f64> {
    eprintln!(
        "[overload] driver ceiling: closed loop of {CEILING_CONNECTIONS} on /gateway/healthz for {CEILING_SECS} s"
    );
    let answers = closed_loop(driver, Endpoint::Ceiling, CEILING_SECS).await?;
    let sum = summarize(Endpoint::Ceiling, &answers);
    let rate = sum.admitted as f64 / CEILING_SECS;
    println!(
        "driver ceiling: {rate:.0} req/s (closed loop of {CEILING_CONNECTIONS} connections on nginx's /gateway/healthz, {}; p50/p99 {:.1}/{:.1} ms)",
        statuses(&sum.by_status),
        sum.p50,
        sum.p99
    );
    Ok(rate)
}

/// One endpoint's capacity (closed loop): its row, and the admitted req/s.
async fn capacity(driver: &Arc<Driver>, endpoint: Endpoint) -> anyhow::Result<f64> {
    let s = &driver.settings;
    let clients = s.closed_loop_clients(endpoint);
    let name = endpoint.name();
    eprintln!(
        "[overload] {name}: capacity, closed loop of {clients} for {} s",
        s.capacity_secs
    );
    let answers = closed_loop(driver, endpoint, s.capacity_secs).await?;
    let base = summarize(endpoint, &answers);
    let capacity = base.admitted as f64 / s.capacity_secs;
    println!(
        "| {name} | capacity (closed loop c{clients}) | - | {capacity:.0} | 100% | {} | {} | {:.1}/{:.1}/{:.1} | - | - |",
        statuses(&base.by_status),
        base.bad,
        base.p50,
        base.p99,
        base.max
    );
    Ok(capacity)
}

/// One endpoint: capacity, then each factor; prints its rows; (passed, failed).
async fn measure(
    driver: &Arc<Driver>,
    endpoint: Endpoint,
    ceiling: f64,
) -> anyhow::Result<(usize, usize)> {
    let s = &driver.settings;
    let name = endpoint.name();
    let capacity = capacity(driver, endpoint).await?;
    let (mut passed, mut failed) = (0, 0);
    for factor in &s.factors {
        let rate = capacity * factor;
        eprintln!(
            "[overload] {name}: {factor}× = {rate:.0} req/s for {} s",
            s.load_secs
        );
        let started = Instant::now();
        let answers = open_loop(driver, endpoint, rate, s.load_secs).await?;
        let took = started.elapsed().as_secs_f64();
        let sum = summarize(endpoint, &answers);
        let goodput = sum.admitted as f64 / s.load_secs;
        let share = if capacity > 0.0 {
            goodput / capacity
        } else {
            0.0
        };
        let bounded = sum.admitted == 0 || sum.p99 <= s.bound(endpoint);
        let verdict = if rate > 0.9 * ceiling {
            "no verdict: above 90% of the driver's ceiling".to_owned()
        } else if sum.bad == 0 && share >= 0.9 && bounded {
            passed += 1;
            "pass".to_owned()
        } else {
            failed += 1;
            "FAIL".to_owned()
        };
        println!(
            "| {name} | {factor}× open loop | {rate:.0} | {goodput:.0} | {:.0}% | {} | {} | {:.1}/{:.1}/{:.1} | {:.1}/{:.1} | {verdict} (refused {}, answered within {took:.1} s) |",
            share * 100.0,
            statuses(&sum.by_status),
            sum.bad,
            sum.p50,
            sum.p99,
            sum.max,
            sum.refused_p99,
            sum.lag_p99,
            sum.refused,
        );
    }
    Ok((passed, failed))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let redis = redis::Client::open(settings.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let driver = Arc::new(Driver {
        host: settings.gateway.to_string(),
        settings,
        redis,
        serial: AtomicU64::new(0),
    });
    let ceiling = ceiling(&driver).await?;
    println!(
        "\n| endpoint | phase | offered req/s | goodput req/s | of capacity | answers by status | other than 2xx or 429/503+Retry-After | admitted p50/p99/max ms (from due time) | refused p99 / driver lag p99 ms | verdict |"
    );
    println!("|---|---|---:|---:|---:|---|---:|---|---|---|");
    let (mut passed, mut failed) = (0, 0);
    for endpoint in driver.settings.endpoints.clone() {
        let (p, f) = measure(&driver, endpoint, ceiling).await?;
        passed += p;
        failed += f;
    }
    println!(
        "\ngoal per phase: no answer other than 2xx or 429/503 + Retry-After, goodput ≥ 90% of capacity, admitted p99 ≤ {} ms ({} ms for register)",
        driver.settings.bound_ms, driver.settings.register_bound_ms
    );
    println!(
        "\noverload: {passed} passed, {failed} failed (phases above 90% of the driver's ceiling have no verdict)"
    );
    Ok(())
}
