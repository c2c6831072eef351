//! `users-svc`: telemetry, configuration, migrations, then serve until SIGTERM/SIGINT.
//!
//! `users-svc migrate` applies pending migrations (waiting for the database as the service
//! does) and exits; `users-svc migrate revert` reverts the latest one. Both read only
//! `DATABASE_URL`.

use shared::config::from_process_or_exit;
use users_svc::config::{Config, DatabaseConfig};
use users_svc::startup::Application;
use users_svc::{db, migrate};

// Under `#[tokio::main]`, not actix's: migrations need a multi-thread tokio runtime
// (docs/dependencies.md §2 trap 7), and actix-web 4 serves fine inside it.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init("users-svc");
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => serve().await,
        ["migrate"] => report(migrate::apply_pending(&database_url()).await?, "applied"),
        ["migrate", "revert"] => report(db::revert_last(&database_url()).await?, "reverted"),
        _ => {
            eprintln!("usage: users-svc [migrate [revert]]");
            std::process::exit(2)
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = from_process_or_exit(Config::from);
    if config.database.migrate_at_start {
        let applied = migrate::apply_pending(&config.database.url).await?;
        tracing::info!(?applied, "migrations up to date");
    } else {
        tracing::info!("MIGRATE_AT_START=false: migrations are left to `users-svc migrate`");
    }
    let app = Application::build(config).await?;
    app.run_until_stopped().await?;
    Ok(())
}

fn database_url() -> String {
    from_process_or_exit(|mut env| {
        let url = DatabaseConfig::read(&mut env).url;
        env.finish().map(|()| url)
    })
}

fn report(versions: Vec<String>, what: &str) -> anyhow::Result<()> {
    tracing::info!(?versions, "migrations {what}");
    Ok(())
}
