//! MariaDB/MySQL access: the diesel-async connection pool ([`Db`]), the embedded migrations,
//! the mapping of driver errors to what the service answers, and the `tb_users` queries
//! ([`users`]).
//!
//! Failure policy: a checkout, a new connection and every query are bounded by
//! `DB_TIMEOUT_MS`. Only a *connection-level* failure (no connection, a timeout, an I/O or
//! protocol error: the server never answered) is "unavailable" (503) and throws away the
//! connection and every idle one instead of returning them to the pool. That is what makes the
//! service recover by itself after MariaDB restarts, while the pool can skip the per-checkout
//! `SELECT 1` (deadpool's "verified" recycling) and keep the count endpoints at one round trip.
//!
//! A query the server *answered* with an error leaves a healthy connection, which goes back to
//! the pool: otherwise any client could force reconnects by sending data the server rejects.
//! Such an error is a duplicate key, a value the table cannot store ([`DbError::Unstorable`]:
//! a 4-byte character in a `utf8`/utf8mb3 column of an adopted Django table), or another refusal
//! ([`DbError::Refused`], e.g. a deadlock or a lock wait timeout, still a 503).

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
    /// The server rejected a value because the column (or the comparison with it) cannot
    /// represent it: error 1366 "Incorrect string value" on a write, 1267/1270/1271 "Illegal mix
    /// of collations" in a `WHERE` (a 4-byte character against a `utf8`/utf8mb3 column), MySQL
    /// 8's 3854 "Cannot convert string". `column` is named when the server names it (1366).
    /// The request's fault, not an outage: the connection went back to the pool.
    #[error("a value the column {column:?} cannot store")]
    Unstorable {
        column: Option<String>,
        #[source]
        cause: anyhow::Error,
    },
    /// The server answered with another error (a deadlock, a lock wait timeout, a read-only
    /// server, ...). Still a 503 for the client, but the connection is fine and went back to
    /// the pool, and the idle ones were kept.
    #[error("the database refused the query")]
    Refused(#[source] anyhow::Error),
    /// Unreachable, timed out, or the connection broke: the connection was discarded and the
    /// pool's idle ones with it.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Not the server's answer but diesel's (a row that does not deserialize, ...): a bug. The
    /// connection was discarded (its state is unknown), the idle ones kept.
    #[error("database query failed")]
    Failed(#[source] anyhow::Error),
}

impl From<DbError> for shared::http::ApiError {
    fn from(e: DbError) -> Self {
        match e {
            // Callers that insert map duplicates to field errors themselves; reaching this
            // means a duplicate where none can happen, which is a bug.
            DbError::Duplicate(key) => {
                Self::Unexpected(anyhow::anyhow!("unexpected duplicate {key:?}"))
            }
            DbError::Unavailable(cause) | DbError::Refused(cause) => Self::Unavailable(cause),
            // Callers that write or look up request data map this to a field error or an
            // empty result; anywhere else it is a bug.
            DbError::Unstorable { column, cause } => {
                Self::Unexpected(cause.context(format!("unexpected unstorable value ({column:?})")))
            }
            DbError::Failed(cause) => Self::Unexpected(cause),
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
    /// connection's fate ([`classify`]): back to the pool on success and whenever the server
    /// answered (the connection is fine), thrown away with the idle ones on a connection-level
    /// failure, thrown away alone on a diesel-side failure. One call is one checkout, so a
    /// caller never holds a connection across slow work of its own (bcrypt).
    pub async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut AsyncMysqlConnection) -> diesel::QueryResult<T>,
    ) -> Result<T, DbError> {
        let mut conn = self.connection().await?;
        let outcome = tokio::time::timeout(self.timeout, work(&mut *conn)).await;
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let failure = classify(e);
                match &failure {
                    DbError::Unavailable(_) => self.discard(conn),
                    DbError::Failed(_) => drop(Object::take(conn)),
                    DbError::Duplicate(_) | DbError::Unstorable { .. } | DbError::Refused(_) => {}
                }
                Err(failure)
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

/// What a failed query means ([`Db::run`] decides the connection's fate from it).
///
/// diesel-async keeps only the message of a MySQL error, not its code. A server error is
/// passed on as the server's bare message, while the driver's own failures (the connection
/// broke, a protocol error) carry mysql_async's fixed, never translated prefixes: those, and
/// diesel's `ClosedConnection`, are the connection-level failures. The data errors are then
/// recognised by the server's (default, English) texts, as `unique_key` reads the duplicate-key
/// one; a server with another `lc_messages` gets `Refused` (503) for them instead, which still
/// keeps the pool.
pub fn classify(e: DieselError) -> DbError {
    const DRIVER_PREFIXES: [&str; 4] = [
        "Input/output error:",
        "Driver error:",
        "Other error:",
        "URL error:",
    ];
    // Server answers that end the connection (1053, 1927, MySQL 8's 4031): as good as an
    // I/O error, and after a shutdown the idle connections are dead too.
    const CONNECTION_ENDED: [&str; 3] = [
        "Server shutdown in progress",
        "Connection was killed",
        "The client was disconnected",
    ];
    const UNSTORABLE: [&str; 3] = [
        "Incorrect string value",
        "Illegal mix of collations",
        "Cannot convert string",
    ];
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            DbError::Duplicate(unique_key(info.message()))
        }
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
            DbError::Unavailable(anyhow::anyhow!(
                "database connection closed: {}",
                info.message()
            ))
        }
        DieselError::DatabaseError(_, info) => {
            let message = info.message().to_owned();
            if DRIVER_PREFIXES
                .iter()
                .chain(&CONNECTION_ENDED)
                .any(|p| message.starts_with(p))
            {
                DbError::Unavailable(anyhow::anyhow!("database query: {message}"))
            } else if UNSTORABLE.iter().any(|p| message.starts_with(p)) {
                DbError::Unstorable {
                    column: rejected_column(&message),
                    cause: anyhow::anyhow!("the server rejected a value: {message}"),
                }
            } else {
                DbError::Refused(anyhow::anyhow!("the server refused the query: {message}"))
            }
        }
        other => DbError::Failed(anyhow::Error::new(other).context("database query")),
    }
}

/// The column an "Incorrect string value" message names: MariaDB says ``... for column
/// `db`.`tb_users`.`username` at row 1``, MySQL 8 `... for column 'username' at row 1`. Read
/// after the last `for column `, so the rejected value (quoted earlier) cannot fake it.
fn rejected_column(message: &str) -> Option<String> {
    let (_, rest) = message.rsplit_once("for column ")?;
    let qualified = rest.split(" at row").next()?;
    let column = qualified
        .rsplit('.')
        .next()?
        .trim_matches(|c| c == '`' || c == '\'');
    (!column.is_empty()).then(|| column.to_owned())
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

    /// How each kind of failure is classified, with the texts mysql_async and MariaDB really
    /// produce (the server's message bare, the driver's with its `Display` prefix).
    #[test]
    fn only_driver_failures_are_unavailable_and_data_errors_are_unstorable() {
        let db_error =
            |kind, message: &str| DieselError::DatabaseError(kind, Box::new(message.to_owned()));
        let name = |e: &DbError| match e {
            DbError::Duplicate(k) => format!("duplicate {k:?}"),
            DbError::Unstorable { column, .. } => format!("unstorable {column:?}"),
            DbError::Refused(_) => "refused".to_owned(),
            DbError::Unavailable(_) => "unavailable".to_owned(),
            DbError::Failed(_) => "failed".to_owned(),
        };
        let cases = [
            (
                "1366 on MariaDB names the column",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Incorrect string value: '\\xF0\\xA0\\x80\\x80\\xF0\\xA0...' for column `test_1`.`tb_users`.`username` at row 1",
                ),
                "unstorable Some(\"username\")",
            ),
            (
                "1366 on MySQL 8",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Incorrect string value: '\\xF0\\xA0\\x80\\x80' for column 'mobile' at row 1",
                ),
                "unstorable Some(\"mobile\")",
            ),
            (
                "1267 in a WHERE names no column",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Illegal mix of collations (utf8mb3_general_ci,IMPLICIT) and (utf8mb4_general_ci,COERCIBLE) for operation '='",
                ),
                "unstorable None",
            ),
            (
                "1271",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Illegal mix of collations for operation '='",
                ),
                "unstorable None",
            ),
            (
                "MySQL 8 3854",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Cannot convert string '\\xF0\\xA0\\x80\\x80' from utf8mb4 to utf8mb3",
                ),
                "unstorable None",
            ),
            (
                "duplicate key",
                db_error(
                    DatabaseErrorKind::UniqueViolation,
                    "Duplicate entry 'tom12' for key 'tb_users_username_uniq'",
                ),
                "duplicate Username",
            ),
            (
                "deadlock: the server answered",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Deadlock found when trying to get lock; try restarting transaction",
                ),
                "refused",
            ),
            (
                "a value that merely mentions an I/O error",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Unknown column 'Input/output error:' in 'where clause'",
                ),
                "refused",
            ),
            (
                "connection reset",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Input/output error: Connection reset by peer (os error 104)",
                ),
                "unavailable",
            ),
            (
                "driver: closed",
                db_error(
                    DatabaseErrorKind::Unknown,
                    "Driver error: `Connection to the server is closed.'",
                ),
                "unavailable",
            ),
            (
                "1053: MariaDB is shutting down",
                db_error(DatabaseErrorKind::Unknown, "Server shutdown in progress"),
                "unavailable",
            ),
            (
                "diesel: closed connection",
                db_error(DatabaseErrorKind::ClosedConnection, "closed"),
                "unavailable",
            ),
            (
                "diesel: a row that does not deserialize",
                DieselError::DeserializationError("bad".into()),
                "failed",
            ),
        ];
        for (why, error, want) in cases {
            assert_eq!(name(&classify(error)), want, "{why}");
        }
    }
}
