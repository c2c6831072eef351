//! Test support: the worker in-process (`spawn_app`) or as its real binary (`WorkerProcess`),
//! against this test's own Redis databases (verify codes and queue), the shared SMS queue
//! storage, and an in-process sms-sandbox reached over real HTTP.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apalis::prelude::TaskSink;
use chrono::Utc;
use harness::service::Vars;
use shared::config::Env;
use shared::domain::{Mobile, SmsCode};
use shared::jobs::SendSmsCode;
use shared::queue::{QueueSettings, SmsStorage};
use sms_sandbox::{Sandbox, SandboxConfig};
use sms_worker::config::Config;
use sms_worker::startup::Application;
use tokio::sync::oneshot;

/// Settings every test uses unless it overrides them: fast heartbeats (orphans recovered in
/// 3–4 s), short retry delays and provider timeouts.
fn base_vars(sandbox: &Sandbox, verify_url: String, queue_url: &str) -> Vars {
    let c = sandbox.config();
    vec![
        ("PORT", "0".to_owned()),
        ("HTTP_WORKERS", "1".to_owned()),
        ("REDIS_URL", verify_url),
        ("QUEUE_REDIS_URL", queue_url.to_owned()),
        ("SMS_QUEUE", "test:sms".to_owned()),
        ("SMS_PROVIDER", "ccp".to_owned()),
        ("CCP_BASE_URL", sandbox.base_url()),
        ("CCP_ACCOUNT_SID", c.account_sid.clone()),
        ("CCP_AUTH_TOKEN", c.auth_token.clone()),
        ("CCP_APP_ID", c.app_id.clone()),
        ("CCP_TIMEOUT_MS", "1000".to_owned()),
        // Aliyun and Tencent at the same sandbox; used when SMS_PROVIDERS names them.
        ("ALIYUN_BASE_URL", sandbox.base_url()),
        ("ALIYUN_ACCESS_KEY_ID", c.aliyun.access_key_id.clone()),
        (
            "ALIYUN_ACCESS_KEY_SECRET",
            c.aliyun.access_key_secret.clone(),
        ),
        ("ALIYUN_SIGN_NAME", c.aliyun.sign_name.clone()),
        ("ALIYUN_TEMPLATE_CODE", c.aliyun.template_code.clone()),
        ("ALIYUN_TIMEOUT_MS", "1000".to_owned()),
        ("TENCENT_BASE_URL", sandbox.base_url()),
        ("TENCENT_SECRET_ID", c.tencent.secret_id.clone()),
        ("TENCENT_SECRET_KEY", c.tencent.secret_key.clone()),
        ("TENCENT_SMS_SDK_APP_ID", c.tencent.sdk_app_id.clone()),
        ("TENCENT_SIGN_NAME", c.tencent.sign_name.clone()),
        ("TENCENT_TEMPLATE_ID", c.tencent.template_id.clone()),
        ("TENCENT_TIMEOUT_MS", "1000".to_owned()),
        // The retry tests count calls against this (the default is 15).
        ("SMS_MAX_ATTEMPTS", "5".to_owned()),
        ("SMS_RETRY_BASE_MS", "200".to_owned()),
        ("SMS_RETRY_MAX_MS", "2000".to_owned()),
        ("SMS_WORKER_HEARTBEAT_SECS", "1".to_owned()),
        ("SMS_WORKER_MISSED_HEARTBEATS", "3".to_owned()),
        ("SHUTDOWN_TIMEOUT_MS", "5000".to_owned()),
    ]
}

/// What a test may change about the worker it starts (in-process or as its binary): the shape
/// of the services' `Options`. The sandbox, the verify-codes and queue Redis come from the
/// [`World`] (the test pushes jobs and reads messages there too).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The verify-codes Redis URL (default: the world's database).
    pub redis_url: Option<String>,
    /// More environment variables, e.g. another provider order.
    pub env: Vars,
}

impl Options {
    /// Only extra or overriding environment variables.
    pub fn env(vars: &[(&'static str, &str)]) -> Self {
        Self {
            env: harness::service::vars(vars),
            ..Self::default()
        }
    }
}

/// What a test needs around a worker: its sandbox, its Redis databases and the queue.
#[derive(Debug)]
pub struct World {
    pub sandbox: Sandbox,
    pub verify: harness::TestRedis,
    pub queue_url: String,
    pub storage: SmsStorage,
}

impl World {
    /// A sandbox with fresh credentials, and two fresh Redis databases on the shared server.
    pub async fn new() -> Self {
        let queue = harness::test_redis();
        Self::with_queue_url(queue.url()).await
    }

    /// Same, with the queue at `queue_url` (a private Redis server for restart tests).
    pub async fn with_queue_url(queue_url: String) -> Self {
        let sandbox = Sandbox::start(SandboxConfig::random()).await;
        let verify = harness::test_redis();
        let storage = queue_settings(&queue_url).storage(
            queue_settings(&queue_url)
                .connection()
                .expect("queue connection"),
        );
        Self {
            sandbox,
            verify,
            queue_url,
            storage,
        }
    }

    /// The worker's environment in this world: the test defaults, then `options`.
    pub fn vars(&self, options: Options) -> Vars {
        let verify_url = options.redis_url.unwrap_or_else(|| self.verify.url());
        let mut vars = base_vars(&self.sandbox, verify_url, &self.queue_url);
        vars.extend(options.env);
        vars
    }

    /// Store `job`'s code and push the job through the shared storage, as verifications-svc
    /// does.
    pub async fn push(&self, job: &SendSmsCode) {
        self.store_code(job);
        self.enqueue(job).await;
    }

    /// Store `job`'s code as `sms_{mobile}` in the verify-codes Redis for the rest of its life
    /// (`created_at` + TTL), or none if that has passed: the worker reads the code's remaining
    /// life there.
    pub fn store_code(&self, job: &SendSmsCode) {
        self.store_codes(std::slice::from_ref(job));
    }

    /// [`World::store_code`] for many jobs, in one round trip.
    pub fn store_codes(&self, jobs: &[SendSmsCode]) {
        let mut pipe = redis::pipe();
        for job in jobs {
            let left = (job.expires_at() - Utc::now()).num_milliseconds();
            let key = shared::keys::sms_code(&job.mobile);
            if left > 0 {
                pipe.cmd("SET")
                    .arg(&key)
                    .arg(job.code.as_str())
                    .arg("PX")
                    .arg(left)
                    .ignore();
            } else {
                pipe.cmd("DEL").arg(&key).ignore();
            }
        }
        let mut conn = self.verify.client().get_connection().expect("verify Redis");
        pipe.query::<()>(&mut conn).expect("SET, DEL");
    }

    /// Push `job` only (a redelivery, or a job whose code is already stored).
    pub async fn enqueue(&self, job: &SendSmsCode) {
        let mut storage = self.storage.clone();
        storage.push(job.clone()).await.expect("job queued");
    }

    /// Push `payload` as a job's stored bytes, the way apalis-redis' push script stores a job
    /// (payload, metadata, due now): what a hand-pushed job or an older producer leaves.
    /// Returns its task id.
    pub fn push_raw(&self, payload: &[u8]) -> String {
        let config = self.storage.get_config();
        let id = uuid::Uuid::new_v4().to_string();
        redis::pipe()
            .hset(config.job_data_hash(), &id, payload)
            .ignore()
            .hset_multiple(
                format!("{}:{id}", config.job_meta_hash()),
                &[
                    ("attempts", "0"),
                    ("max_attempts", "25"),
                    ("status", "Pending"),
                ],
            )
            .ignore()
            .zadd(config.scheduled_jobs_set(), &id, Utc::now().timestamp())
            .ignore()
            .query::<()>(&mut self.queue_conn())
            .expect("HSET, ZADD");
        id
    }

    /// The dead-letter list, newest first, each entry parsed.
    pub fn dead_letters(&self) -> Vec<serde_json::Value> {
        let key = sms_worker::dead_letter::key("test:sms");
        let entries: Vec<String> = redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(&mut self.queue_conn())
            .expect("LRANGE");
        entries
            .iter()
            .map(|e| serde_json::from_str(e).expect("a JSON entry"))
            .collect()
    }

    /// The names of the registered queue workers.
    pub fn workers(&self) -> Vec<String> {
        redis::cmd("ZRANGE")
            .arg(self.storage.get_config().workers_set())
            .arg(0)
            .arg(-1)
            .query(&mut self.queue_conn())
            .expect("ZRANGE")
    }

    /// Messages the sandbox recorded for `job`'s mobile.
    pub fn messages(&self, job: &SendSmsCode) -> Vec<sms_sandbox::Message> {
        self.sandbox.messages_for(job.mobile.as_str())
    }

    /// Calls of `provider` that carried `job`'s request id (sends; lookups carry none).
    pub fn sends(&self, job: &SendSmsCode, provider: &str) -> Vec<sms_sandbox::Call> {
        self.calls(job)
            .into_iter()
            .filter(|c| c.provider == provider)
            .collect()
    }

    /// Every call the sandbox got from `provider`.
    pub fn provider_calls(&self, provider: &str) -> Vec<sms_sandbox::Call> {
        self.sandbox
            .calls()
            .into_iter()
            .filter(|c| c.provider == provider)
            .collect()
    }

    /// Calls the sandbox received carrying `job`'s request id.
    pub fn calls(&self, job: &SendSmsCode) -> Vec<sms_sandbox::Call> {
        let id = job.request_id.simple().to_string();
        self.sandbox
            .calls()
            .into_iter()
            .filter(|c| c.req_id.as_deref() == Some(id.as_str()))
            .collect()
    }

    /// Whether the "sent" marker of `job` exists, and its TTL in seconds.
    pub fn marker_ttl(&self, job: &SendSmsCode) -> i64 {
        let mut conn = self.verify.client().get_connection().expect("verify Redis");
        redis::cmd("TTL")
            .arg(shared::keys::sms_sent(&job.request_id))
            .query(&mut conn)
            .expect("TTL")
    }
}

impl World {
    /// The attempt counter of `job` (`None` if absent) and its TTL in milliseconds.
    pub fn attempts(&self, job: &SendSmsCode) -> (Option<u32>, i64) {
        let key = shared::keys::sms_send_attempts(&job.request_id);
        let mut conn = self.verify.client().get_connection().expect("verify Redis");
        redis::pipe()
            .get(&key)
            .pttl(&key)
            .query(&mut conn)
            .expect("GET, PTTL")
    }

    /// Leave `job`'s attempt counter at `count`, as an earlier worker would have (TTL: the
    /// code's life).
    pub fn set_attempts(&self, job: &SendSmsCode, count: u32) {
        let mut conn = self.verify.client().get_connection().expect("verify Redis");
        let _: () = redis::cmd("SET")
            .arg(shared::keys::sms_send_attempts(&job.request_id))
            .arg(count)
            .arg("EX")
            .arg(shared::keys::SMS_CODE_TTL_SECS)
            .query(&mut conn)
            .expect("SET");
    }
}

/// How apalis recorded the end of a job: its metadata's `status` and which of the queue's sets
/// hold its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub status: String,
    pub done: bool,
    pub dead: bool,
    pub scheduled: bool,
}

impl Finished {
    /// A job the handler finished with `Ok`: never to be run again.
    pub fn done() -> Self {
        Self {
            status: "Done".into(),
            done: true,
            dead: false,
            scheduled: false,
        }
    }
}

impl World {
    fn queue_conn(&self) -> redis::Connection {
        redis::Client::open(self.queue_url.as_str())
            .expect("url")
            .get_connection()
            .expect("queue Redis")
    }

    /// The apalis task ids whose payload is `job` (matched by its request id).
    pub fn task_ids(&self, job: &SendSmsCode) -> Vec<String> {
        let config = self.storage.get_config();
        let data: std::collections::HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(config.job_data_hash())
            .query(&mut self.queue_conn())
            .expect("HGETALL");
        data.into_iter()
            .filter(|(_, payload)| {
                serde_json::from_slice::<SendSmsCode>(payload)
                    .is_ok_and(|p| p.request_id == job.request_id)
            })
            .map(|(id, _)| id)
            .collect()
    }

    /// How apalis recorded the end of `job` (pushed once), `None` until it was acknowledged.
    pub fn finished(&self, job: &SendSmsCode) -> Option<Finished> {
        let ids = self.task_ids(job);
        assert_eq!(ids.len(), 1, "one task for the job: {ids:?}");
        self.finished_task(&ids[0])
    }

    /// How apalis recorded the end of the task `id`, `None` until it was acknowledged.
    pub fn finished_task(&self, id: &str) -> Option<Finished> {
        let config = self.storage.get_config();
        // `done_at` is written only by apalis's acknowledgement (`handle_results.lua`); the
        // push already wrote `status` = Pending.
        type Reply = (Option<String>, Option<String>, bool, bool, Option<f64>);
        let (done_at, status, done, dead, scheduled): Reply = redis::pipe()
            .cmd("HGET")
            .arg(format!("{}:{id}", config.job_meta_hash()))
            .arg("done_at")
            .cmd("HGET")
            .arg(format!("{}:{id}", config.job_meta_hash()))
            .arg("status")
            .cmd("SISMEMBER")
            .arg(config.done_jobs_set())
            .arg(id)
            .cmd("SISMEMBER")
            .arg(config.dead_jobs_set())
            .arg(id)
            .cmd("ZSCORE")
            .arg(config.scheduled_jobs_set())
            .arg(id)
            .query(&mut self.queue_conn())
            .expect("HGET, SISMEMBER, ZSCORE");
        done_at.map(|_| Finished {
            status: status.unwrap_or_default(),
            done,
            dead,
            scheduled: scheduled.is_some(),
        })
    }

    /// Wait for apalis to acknowledge `job` and return what it recorded first. A handler that
    /// returned `Err` shows up as `Failed` and scheduled again (apalis retries it after
    /// `attempt` seconds), long before such a retry could run and finish it as `Done`.
    pub async fn wait_finished(&self, job: &SendSmsCode, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(finished) = self.finished(job) {
                return finished;
            }
            assert!(
                Instant::now() < deadline,
                "job not acknowledged in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The shared queue settings for `url` (same name the worker is configured with).
pub fn queue_settings(url: &str) -> QueueSettings {
    QueueSettings::from_env(&mut Env::from_vars([
        ("QUEUE_REDIS_URL", url),
        ("SMS_QUEUE", "test:sms"),
    ]))
}

/// A job for a random mobile, created now, valid 5 minutes.
pub fn job() -> SendSmsCode {
    let n = uuid::Uuid::new_v4().as_u128();
    SendSmsCode {
        mobile: Mobile::parse(&format!("138{:08}", n % 100_000_000)).expect("valid mobile"),
        code: SmsCode::parse(&format!("{:06}", (n >> 64) % 1_000_000)).expect("valid code"),
        ttl_minutes: 5,
        template_id: "1".into(),
        request_id: uuid::Uuid::new_v4(),
        created_at: Utc::now(),
    }
}

/// Poll `check` every 25 ms until it holds or `timeout` passes; whether it held.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A worker running in this test process.
#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Start the worker in-process in `world`, with the test defaults.
pub async fn spawn_app(world: &World) -> TestApp {
    spawn_app_with(world, Options::default()).await
}

/// Start the worker in-process in `world`, with `options`.
pub async fn spawn_app_with(world: &World, options: Options) -> TestApp {
    // Logs show up in a failing test's output.
    shared::telemetry::init("sms-worker");
    // reqwest needs the crypto provider before the worker builds its client.
    let http = harness::http_client();
    let config =
        Config::from(Env::from_vars(world.vars(options))).expect("test configuration is valid");
    let app = Application::build(config).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        http,
        stop: Some(tx),
        done: Some(done),
    }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    /// The value of one sample line of `/metrics` (e.g. `sms_jobs_total{outcome="sent"`).
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let text = self.get("/metrics").await.text().await.expect("metrics");
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Wait until `metric(prefix)` reaches `value`.
    pub async fn wait_metric(&self, prefix: &str, value: f64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.metric(prefix).await == Some(value) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Stop gracefully and wait for the end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.expect("joined").expect("stopped cleanly");
        }
    }
}

/// The worker as its real binary, killed when dropped.
#[derive(Debug)]
pub struct WorkerProcess {
    pub child: Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl WorkerProcess {
    /// Start `target/.../sms-worker` in `world` with `options` (and only those variables, plus
    /// PATH), output to a log file.
    pub fn start(world: &World, options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("worker.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sms-worker"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(world.vars(options))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("the sms-worker binary starts");
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        assert!(harness::process::signal(self.child.id(), "TERM"));
    }

    /// Wait up to `timeout` for the exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The process's output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Retry an async operation until it succeeds or `timeout` passes (Redis coming back).
pub async fn retry_until<T, E: std::fmt::Debug, F: Future<Output = Result<T, E>>>(
    timeout: Duration,
    mut op: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("still failing: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
