//! `sms-worker`: telemetry, configuration, then consume jobs until SIGTERM/SIGINT.

use sms_worker::{config::Config, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init("sms-worker");
    let config = Config::from_env().unwrap_or_else(|e| e.exit());
    let app = Application::build(config).await?;
    app.run_until_stopped().await?;
    Ok(())
}
