//! `verifications-svc`: telemetry, configuration, then serve until SIGTERM/SIGINT.

use verifications_svc::{config::Config, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init("verifications-svc");
    let config = shared::config::from_process_or_exit(Config::from);
    let app = Application::build(config).await?;
    app.run_until_stopped().await?;
    Ok(())
}
