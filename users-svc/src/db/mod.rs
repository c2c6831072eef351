//! MariaDB/MySQL access: the diesel-async connection pool ([`Db`]), the embedded migrations,
//! the mapping of driver errors to what the service answers, and the `tb_users` queries
//! ([`users`]).
//!
//! Failure policy: a checkout, a new connection and every query are bounded by
//! `DB_TIMEOUT_MS`; any failure other than a duplicate key is "unavailable" (503), and the
//! connection it happened on is thrown away instead of going back to the pool. That is what
//! makes the service recover by itself after MariaDB restarts, while the pool can skip the
//! per-checkout `SELECT 1` (deadpool's "verified" recycling) and keep the count endpoints at
//! one round trip.

pub mod schema;
pub mod users;

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncMysqlConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::DatabaseConfig;

/// The migrations of `users-svc/migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// A pooled connection.
pub type Conn = Object<AsyncMysqlConnection>;

/// The pool and the time we allow each step.
#[derive(Clone)]
pub struct Db {
    pool: Pool<AsyncMysqlConnection>,
    timeout: Duration,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("status", &self.pool.status())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a database step failed, as far as the caller cares.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The INSERT hit a unique index: the value is taken (also the loser of a race).
    #[error("duplicate value for {0:?}")]
    Duplicate(UniqueKey),
    /// Unreachable, timed out, or failed for a reason that is not the request's fault.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl From<DbError> for shared::http::ApiError {
    fn from(e: DbError) -> Self {
        match e {
            // Callers that insert map duplicates to field errors themselves; reaching this
            // means a duplicate where none can happen, which is a bug.
            DbError::Duplicate(key) => {
                Self::Unexpected(anyhow::anyhow!("unexpected duplicate {key:?}"))
            }
            DbError::Unavailable(cause) => Self::Unavailable(cause),
        }
    }
}

/// The unique indexes of `tb_users` (named in the migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueKey {
    Username,
    Mobile,
    /// Another index: on a `tb_users` adopted from Django the unique indexes are Django's
    /// (`username`, `mobile`), so the caller looks up which value is taken.
    Other,
}

impl Db {
    /// Build the pool. Nothing connects until the first checkout, so the service starts (and
    /// answers 503) even while MariaDB is still coming up.
    pub fn build(config: &DatabaseConfig) -> anyhow::Result<Self> {
        let mut manager_config = ManagerConfig::<AsyncMysqlConnection>::default();
        manager_config.recycling_method = RecyclingMethod::Fast;
        let manager = AsyncDieselConnectionManager::new_with_config(&config.url, manager_config);
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.timeout))
            .create_timeout(Some(config.timeout))
            .recycle_timeout(Some(config.timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the database pool: {e}"))?;
        Ok(Self {
            pool,
            timeout: config.timeout,
        })
    }

    /// A connection from the pool, or `Unavailable` within the timeout.
    pub async fn connection(&self) -> Result<Conn, DbError> {
        self.pool
            .get()
            .await
            .map_err(|e| DbError::Unavailable(anyhow::anyhow!("database connection: {e}")))
    }

    /// Check out a connection and run `work` on it within the timeout, then decide the
    /// connection's fate: back to the pool on success and on a duplicate key (the connection is
    /// fine), thrown away on anything else. One call is one checkout, so a caller never holds a
    /// connection across slow work of its own (bcrypt).
    pub async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut AsyncMysqlConnection) -> diesel::QueryResult<T>,
    ) -> Result<T, DbError> {
        let mut conn = self.connection().await?;
        let outcome = tokio::time::timeout(self.timeout, work(&mut *conn)).await;
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))) => {
                Err(DbError::Duplicate(unique_key(info.message())))
            }
            Ok(Err(e)) => {
                self.discard(conn);
                Err(DbError::Unavailable(
                    anyhow::Error::new(e).context("database query"),
                ))
            }
            Err(_) => {
                self.discard(conn);
                Err(DbError::Unavailable(anyhow::anyhow!(
                    "database query took longer than {:?}",
                    self.timeout
                )))
            }
        }
    }

    /// Take a failed connection out of the pool for good (it is closed when dropped: after an
    /// I/O error or a cancelled query its state is unknown), and with it every idle one: a
    /// failure usually means MariaDB went away, and then they are all dead. Without this, each
    /// stale connection would cost one more 503 after MariaDB is back.
    fn discard(&self, conn: Conn) {
        drop(Object::take(conn));
        let flushed = self.pool.retain(|_, _| false);
        if !flushed.removed.is_empty() {
            tracing::info!(
                idle = flushed.removed.len(),
                "dropped idle database connections after a failure"
            );
        }
    }

    /// `SELECT 1` through the pool, for `/readyz`.
    pub async fn ping(&self) -> Result<(), String> {
        use diesel::IntoSql;
        use diesel_async::RunQueryDsl;
        self.run(async |c| {
            diesel::select(1_i32.into_sql::<diesel::sql_types::Integer>())
                .get_result::<i32>(c)
                .await
        })
        .await
        .map(drop)
        .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
    }
}

/// Which unique index a duplicate-key message names. MariaDB says
/// `Duplicate entry 'x' for key 'tb_users_username_uniq'`, MySQL 8 `... for key
/// 'tb_users.tb_users_username_uniq'`. Only the text after the last `for key '` is read: the
/// duplicate value itself may contain anything, an index name included.
pub fn unique_key(message: &str) -> UniqueKey {
    let key = message
        .rsplit_once("for key '")
        .map_or("", |(_, k)| k.trim_end_matches('\''));
    if key.ends_with("tb_users_username_uniq") {
        UniqueKey::Username
    } else if key.ends_with("tb_users_mobile_uniq") {
        UniqueKey::Mobile
    } else {
        UniqueKey::Other
    }
}

/// Apply every pending migration, on a blocking thread with diesel's sync migration harness
/// over [`diesel_async::async_connection_wrapper::AsyncConnectionWrapper`] (DEPENDENCIES trap 7:
/// `AsyncMigrationHarness` needs `block_in_place`, which a current-thread runtime, as in tests,
/// does not allow). A named lock serialises instances starting at the same time.
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

async fn with_sync_connection<T: Send + 'static>(
    url: &str,
    work: impl FnOnce(&mut SyncConn) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    use diesel::{Connection, RunQueryDsl};
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = SyncConn::establish(&url).map_err(|e| {
            anyhow::Error::new(ConnectError {
                url: shared::redis_pool::redacted(&url),
                cause: e.to_string(),
            })
        })?;
        // Per database, so parallel test databases do not wait for each other.
        diesel::sql_query("DO GET_LOCK(CONCAT('users_svc_migrate.', DATABASE()), 60)")
            .execute(&mut conn)?;
        let result = work(&mut conn);
        diesel::sql_query("DO RELEASE_LOCK(CONCAT('users_svc_migrate.', DATABASE()))")
            .execute(&mut conn)?;
        result
    })
    .await
    .map_err(|e| anyhow::anyhow!("the migration thread failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_key_messages_name_the_index_even_when_the_value_looks_like_one() {
        let cases = [
            (
                "MariaDB username",
                "Duplicate entry 'tom12' for key 'tb_users_username_uniq'",
                UniqueKey::Username,
            ),
            (
                "MySQL 8 mobile",
                "Duplicate entry '13800138000' for key 'tb_users.tb_users_mobile_uniq'",
                UniqueKey::Mobile,
            ),
            (
                "value names the other index",
                "Duplicate entry 'tb_users_mobile_uniq' for key 'tb_users_username_uniq'",
                UniqueKey::Username,
            ),
            (
                "primary key",
                "Duplicate entry '1' for key 'PRIMARY'",
                UniqueKey::Other,
            ),
            ("no key at all", "something else", UniqueKey::Other),
        ];
        for (why, message, want) in cases {
            assert_eq!(unique_key(message), want, "{why}");
        }
    }
}
