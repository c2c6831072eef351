//! `spawn_app()`: the service on a free port against this test's own MariaDB database (created
//! by the harness, migrated here exactly as `main` does) and its own Redis database.

use std::time::Duration;

use serde_json::Value;
use users_svc::config::Config;
use users_svc::startup::Application;

/// The JWT secret of every test app.
pub const JWT_SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// A running service and what the test needs to reach it and its data.
#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    /// This test's own Redis database (keys are asserted through it).
    pub redis: harness::TestRedis,
    /// This test's own MariaDB database, migrated (rows are asserted through it).
    pub db: harness::TestDatabase,
    pub http: reqwest::Client,
}

/// Settings of the test apps besides the addresses: bcrypt at its minimum cost for speed.
fn base_vars() -> Vec<(&'static str, String)> {
    vec![
        ("PORT", "0".to_owned()),
        ("HTTP_WORKERS", "2".to_owned()),
        ("REDIS_TIMEOUT_MS", "300".to_owned()),
        ("DB_TIMEOUT_MS", "1000".to_owned()),
        ("BCRYPT_COST", "10".to_owned()),
        ("JWT_SECRET", JWT_SECRET.to_owned()),
    ]
}

/// What a test may change about the service it spawns: the same shape as verifications-svc's.
#[derive(Debug, Default)]
pub struct Options {
    /// The verify-codes Redis URL (default: this test's database on the shared server).
    pub redis_url: Option<String>,
    /// A database the test prepared before the migrations run, e.g. a `tb_users` that Django
    /// made (default: a fresh one on the shared server).
    pub database: Option<harness::TestDatabase>,
    /// A database URL of the test's choosing (a private MariaDB it may stop); `TestApp::db`
    /// then still names a database on the shared server, unused by the service.
    pub database_url: Option<String>,
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

/// The service against a Redis URL of the test's choosing (a private server it may stop).
pub async fn spawn_app_with_redis(url: String) -> TestApp {
    spawn_app_with(Options {
        redis_url: Some(url),
        ..Options::default()
    })
    .await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let redis = harness::test_redis();
    let db = options.database.unwrap_or_else(harness::test_database);
    let database_url = options.database_url.unwrap_or_else(|| db.url());
    users_svc::db::migrate(&database_url)
        .await
        .expect("migrations apply to a fresh database or adopt Django's table");
    let mut env = base_vars();
    env.push((
        "REDIS_URL",
        options.redis_url.unwrap_or_else(|| redis.url()),
    ));
    env.push(("DATABASE_URL", database_url));
    env.extend(options.env);
    let config =
        Config::from(shared::config::Env::from_vars(env)).expect("test configuration is valid");
    let app = Application::build(config).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        redis,
        db,
        http: harness::http_client(),
    }
}

impl TestApp {
    /// The address of another instance of the service on the same Redis and MariaDB databases
    /// (as a second machine behind the gateway would be).
    pub async fn second_instance(&self) -> String {
        let mut env = base_vars();
        env.push(("REDIS_URL", self.redis.url()));
        env.push(("DATABASE_URL", self.db.url()));
        let config =
            Config::from(shared::config::Env::from_vars(env)).expect("test configuration is valid");
        let app = Application::build(config).await.expect("the app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        address
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    /// `POST /users/` with a JSON body.
    pub async fn register(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/users/", self.address))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `POST /users/` with any content type and body.
    pub async fn register_raw(
        &self,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/users/", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub fn redis_conn(&self) -> redis::Connection {
        self.redis
            .client()
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to the test Redis")
    }

    /// Store an SMS code as verifications-svc does (`sms_{mobile}`, 300 s).
    pub fn store_sms_code(&self, mobile: &str, code: &str) {
        redis::cmd("SETEX")
            .arg(format!("sms_{mobile}"))
            .arg(300)
            .arg(code)
            .query::<()>(&mut self.redis_conn())
            .expect("SETEX");
    }

    /// The value of a Redis key, if any.
    pub fn redis_get(&self, key: &str) -> Option<String> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut self.redis_conn())
            .expect("GET")
    }

    /// The TTL of a Redis key (-2 when missing, -1 without expiry).
    pub fn redis_ttl(&self, key: &str) -> i64 {
        redis::cmd("TTL")
            .arg(key)
            .query(&mut self.redis_conn())
            .expect("TTL")
    }

    /// The number of rows in `tb_users`.
    pub fn user_count(&self) -> usize {
        self.db
            .scalar("SELECT COUNT(*) FROM tb_users")
            .and_then(|n| n.parse().ok())
            .expect("a count")
    }
}

/// A valid registration body.
pub fn registration(username: &str, mobile: &str, code: &str) -> Value {
    serde_json::json!({
        "username": username,
        "password": "password123",
        "password2": "password123",
        "sms_code": code,
        "mobile": mobile,
        "allow": "true",
    })
}

/// Status and parsed JSON body of a response (panics on a non-JSON body: every answer is JSON).
pub async fn status_and_json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = res.text().await.expect("body");
    assert!(ct.starts_with("application/json"), "{status} {ct}: {text}");
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} not JSON ({e}): {text}"));
    (status, body)
}

impl TestApp {
    /// Insert an account directly, as another instance or Django would have.
    pub fn insert_user(&self, username: &str, mobile: &str) {
        self.db.query(&format!(
            "SET NAMES utf8mb4; INSERT INTO tb_users (password, username, mobile, date_joined) \
             VALUES ('bcrypt_sha256$x', '{username}', '{mobile}', NOW(6))"
        ));
    }
}
