//! `spawn_app()`: the service on a free port against this test's own Redis databases: one for
//! the verify codes, another one for the apalis queue (as in production, they are separate).

use redis::Commands;
use shared::jobs::SendSmsCode;
use shared::queue::QueueSettings;
use verifications_svc::config::Config;
use verifications_svc::startup::Application;

/// A UUID that no test issues by accident.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A running service and what the test needs to reach it and its data.
#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    /// This test's verify-codes database (keys are asserted through it).
    pub redis: harness::TestRedis,
    /// The queue's settings as the service got them (its Redis URL and queue name).
    pub queue: QueueSettings,
    pub http: reqwest::Client,
}

/// What a test may change about the service it spawns: the same shape as users-svc's and
/// sms-worker's.
#[derive(Debug, Default)]
pub struct Options {
    /// The verify-codes Redis URL (default: this test's database on the shared server).
    pub redis_url: Option<String>,
    /// The queue Redis URL (default: a second database of its own on the shared server).
    pub queue_url: Option<String>,
    /// More environment variables, e.g. low limits.
    pub env: harness::service::Vars,
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

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// The service against a verify-codes Redis URL of the test's choosing (a private server it
/// may stop).
pub async fn spawn_app_with_redis(url: String) -> TestApp {
    spawn_app_with(Options {
        redis_url: Some(url),
        ..Options::default()
    })
    .await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let redis = harness::test_redis();
    let queue_url = options
        .queue_url
        .unwrap_or_else(|| harness::test_redis().url());
    let mut vars = vec![
        ("PORT", "0".to_owned()),
        ("HTTP_WORKERS", "2".to_owned()),
        (
            "REDIS_URL",
            options.redis_url.unwrap_or_else(|| redis.url()),
        ),
        ("REDIS_TIMEOUT_MS", "300".to_owned()),
        ("QUEUE_REDIS_URL", queue_url),
        ("QUEUE_TIMEOUT_MS", "300".to_owned()),
    ];
    vars.extend(options.env);
    let config =
        Config::from(shared::config::Env::from_vars(vars)).expect("test configuration is valid");
    let queue = config.queue.clone();
    let app = Application::build(config).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        redis,
        queue,
        http: harness::http_client(),
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

    /// `GET /image_codes/{id}/`.
    pub async fn image_code(&self, id: &str) -> reqwest::Response {
        self.get(&format!("/image_codes/{id}/")).await
    }

    /// `GET /sms_codes/{mobile}/?image_code_id={id}&text={text}`.
    pub async fn sms_code(&self, mobile: &str, id: &str, text: &str) -> reqwest::Response {
        let query = serde_urlencoded::to_string([("image_code_id", id), ("text", text)])
            .expect("strings encode");
        self.get(&format!("/sms_codes/{mobile}/?{query}")).await
    }

    /// A synchronous connection to the verify-codes database, for arranging and asserting
    /// (`redis_conn` in every crate's `TestApp`; `db` is MariaDB's name, in users-svc).
    pub fn redis_conn(&self) -> redis::Connection {
        self.redis
            .client()
            .get_connection()
            .expect("the test Redis accepts connections")
    }

    /// Store a captcha text directly, as `GET /image_codes/` would.
    pub fn seed_image_code(&self, id: &str, text: &str) {
        let _: () = self
            .redis_conn()
            .set_ex(format!("img_{id}"), text, 300)
            .expect("SETEX");
    }

    pub fn value(&self, key: &str) -> Option<String> {
        self.redis_conn().get(key).expect("GET")
    }

    pub fn ttl(&self, key: &str) -> i64 {
        self.redis_conn().ttl(key).expect("TTL")
    }

    /// Every job in the queue's storage, read back from the queue's Redis where apalis keeps
    /// the payloads (`{queue}:data`), decoded as the worker will decode them.
    pub fn queued_jobs(&self) -> Vec<SendSmsCode> {
        let mut conn = redis::Client::open(self.queue.redis_url.as_str())
            .expect("URL")
            .get_connection()
            .expect("the queue Redis accepts connections");
        let config = self.queue.apalis_config();
        let data: std::collections::HashMap<String, Vec<u8>> =
            conn.hgetall(config.job_data_hash()).expect("HGETALL");
        let scheduled: Vec<String> = conn
            .zrange(config.scheduled_jobs_set(), 0, -1)
            .expect("ZRANGE");
        let mut ids: Vec<&String> = data.keys().collect();
        ids.sort();
        let mut scheduled_sorted: Vec<&String> = scheduled.iter().collect();
        scheduled_sorted.sort();
        assert_eq!(
            ids, scheduled_sorted,
            "every stored job is due for a worker"
        );
        data.values()
            .map(|v| serde_json::from_slice(v).expect("a SendSmsCode payload"))
            .collect()
    }

    /// The value of one sample in `/metrics`, 0 if absent.
    pub async fn metric(&self, series: &str) -> u64 {
        let text = self.get("/metrics").await.text().await.expect("body");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

/// Status and body text of a response.
pub async fn status_and_body(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    (status, res.text().await.expect("body"))
}
