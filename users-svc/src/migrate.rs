//! The `migrate` path: bring the schema up to date before anything serves, the one way
//! `users-svc` (before it binds) and the one-shot `users-svc migrate` both do it.
//!
//! Migrations are not part of [`crate::startup::Application::build`]: the service must start,
//! and answer 503, while MariaDB is down, and tests build it against a stopped server.

use std::time::{Duration, Instant};

use crate::db;

/// How long to wait for an unreachable database before giving up: MariaDB started at the same
/// moment (by compose, say) takes a few seconds to accept connections.
pub const DATABASE_WAIT: Duration = Duration::from_secs(30);

/// Apply every pending migration, retrying once a second while the database cannot be
/// reached, for at most [`DATABASE_WAIT`]. Returns the versions applied.
pub async fn apply_pending(url: &str) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + DATABASE_WAIT;
    loop {
        match db::migrate(url).await {
            Err(e) if e.is::<db::ConnectError>() && Instant::now() < deadline => {
                tracing::warn!(error = %e, "database not reachable yet, retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}
