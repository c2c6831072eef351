//! `sms-worker`: telemetry, TLS crypto provider, configuration, then consume jobs until
//! SIGTERM/SIGINT (exit 0 after the in-flight jobs).

use sms_worker::{config::Config, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init("sms-worker");
    // reqwest is built with `rustls-no-provider`: install *ring* once, before any client.
    // An error only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = shared::config::from_process_or_exit(Config::from);
    let app = Application::build(config).await?;
    app.run_until_stopped().await?;
    tracing::info!("sms-worker stopped");
    Ok(())
}
