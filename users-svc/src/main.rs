//! `users-svc`: telemetry, configuration, then serve until SIGTERM/SIGINT.

use users_svc::{config::Config, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init("users-svc");
    let config = Config::from_env().unwrap_or_else(|e| e.exit());
    let app = Application::build(config).await?;
    app.run_until_stopped().await?;
    Ok(())
}
