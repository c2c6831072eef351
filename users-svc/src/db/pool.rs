//! The diesel-async connection pool ([`Db`]) and the one way to use it ([`Db::run`]).
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

use std::time::Duration;

use diesel_async::AsyncMysqlConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};

use super::error::{DbError, classify};
use crate::config::DatabaseConfig;

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
