//! `spawn_app()`: the worker on a free health port against this test's own Redis database.

use sms_worker::config::Config;
use sms_worker::startup::Application;

/// A running service and what the test needs to reach it and its data.
#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    let env = shared::config::Env::from_vars([
        ("PORT", "0".to_owned()),
        ("HTTP_WORKERS", "2".to_owned()),
    ]);
    let config = Config::from(env).expect("test configuration is valid");
    let app = Application::build(config).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
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
