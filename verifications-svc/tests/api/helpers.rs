//! `spawn_app()`: the service on a free port against this test's own Redis database.

use verifications_svc::config::Config;
use verifications_svc::startup::Application;

/// A running service and what the test needs to reach it and its data.
#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    /// This test's own Redis database (keys are asserted through it).
    pub redis: harness::TestRedis,
    pub http: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    let redis = harness::test_redis();
    let url = redis.url();
    spawn(redis, url).await
}

/// The service against a Redis URL of the test's choosing (a private server it may stop).
pub async fn spawn_app_with_redis(url: String) -> TestApp {
    spawn(harness::test_redis(), url).await
}

async fn spawn(redis: harness::TestRedis, url: String) -> TestApp {
    let env = shared::config::Env::from_vars([
        ("PORT", "0".to_owned()),
        ("HTTP_WORKERS", "2".to_owned()),
        ("REDIS_URL", url),
        ("REDIS_TIMEOUT_MS", "300".to_owned()),
    ]);
    let config = Config::from(env).expect("test configuration is valid");
    let app = Application::build(config).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        redis,
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
}
