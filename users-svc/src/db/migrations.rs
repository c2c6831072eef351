//! The embedded migrations of `users-svc/migrations/` and the blocking connection that
//! applies them.

use diesel_async::AsyncMysqlConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The migrations of `users-svc/migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
/// Apply every pending migration, on a blocking thread with diesel's sync migration harness
/// over [`diesel_async::async_connection_wrapper::AsyncConnectionWrapper`] (docs/dependencies.md §2
/// trap 7: `AsyncMigrationHarness` needs `block_in_place`, which a current-thread runtime, as in
/// tests, does not allow). A named lock serialises instances starting at the same time.
pub async fn migrate(url: &str) -> anyhow::Result<Vec<String>> {
    with_sync_connection(url, |conn| {
        conn.run_pending_migrations(MIGRATIONS)
            .map(|done| done.iter().map(ToString::to_string).collect())
            .map_err(|e| anyhow::anyhow!("running migrations: {e}"))
    })
    .await
}

/// Revert the most recent migration (`users-svc migrate revert`).
pub async fn revert_last(url: &str) -> anyhow::Result<Vec<String>> {
    with_sync_connection(url, |conn| {
        conn.revert_last_migration(MIGRATIONS)
            .map(|v| vec![v.to_string()])
            .map_err(|e| anyhow::anyhow!("reverting the last migration: {e}"))
    })
    .await
}

/// The database could not be reached at all (as opposed to a migration that failed): worth
/// waiting for at start-up, when MariaDB may still be starting.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {url}: {cause}")]
pub struct ConnectError {
    url: String,
    cause: String,
}

type SyncConn =
    diesel_async::async_connection_wrapper::AsyncConnectionWrapper<AsyncMysqlConnection>;

/// Run `work` on one connection of its own, under the per-database migration lock, then close
/// the connection properly: it comes from a connection source (`closing.rs`), so it says
/// goodbye with `COM_QUIT` instead of being cut (MariaDB logged `Aborted connection` for each
/// start-up).
async fn with_sync_connection<T: Send + 'static>(
    url: &str,
    work: impl FnOnce(&mut SyncConn) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let url = url.to_owned();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let unreachable = |cause: String| {
            anyhow::Error::new(ConnectError {
                url: shared::redis_pool::redacted(&url),
                cause,
            })
        };
        let pool = super::closing::source(&url, 1).map_err(unreachable)?;
        let result = runtime
            .block_on(async {
                let conn = pool.get_conn().await.map_err(|e| e.to_string())?;
                AsyncMysqlConnection::try_from(conn)
                    .await
                    .map_err(|e| e.to_string())
            })
            .map_err(unreachable)
            .and_then(|conn| locked(&mut SyncConn::from(conn), work));
        // The connection was given back (the wrapper was dropped): wait for its goodbye.
        if let Err(e) = runtime.block_on(pool.disconnect()) {
            tracing::debug!(error = %e, "closing the migration connection");
        }
        result
    })
    .await
    .map_err(|e| anyhow::anyhow!("the migration thread failed: {e}"))?
}

/// `work` under a named lock, which serialises instances starting at the same time.
fn locked<T>(
    conn: &mut SyncConn,
    work: impl FnOnce(&mut SyncConn) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use diesel::RunQueryDsl;
    // Per database, so parallel test databases do not wait for each other.
    diesel::sql_query("DO GET_LOCK(CONCAT('users_svc_migrate.', DATABASE()), 60)").execute(conn)?;
    let result = work(conn);
    diesel::sql_query("DO RELEASE_LOCK(CONCAT('users_svc_migrate.', DATABASE()))").execute(conn)?;
    result
}
