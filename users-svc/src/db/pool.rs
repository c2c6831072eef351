//! The diesel-async connection pool ([`Db`]) and the one way to use it ([`Db::run`]).
//!
//! Failure policy: a checkout, a new connection and every query are bounded by
//! `DB_TIMEOUT_MS`. Only a *connection-level* failure (no connection, a timeout, an I/O or
//! protocol error: the server never answered) is "unavailable" (503) and throws away the
//! connection and every idle one instead of returning them to the pool.
//!
//! A MariaDB restart costs the user nothing, in two layers, neither with a round trip on the hot
//! path (the count endpoints stay at one round trip):
//! - A connection that sat idle for `DB_IDLE_CHECK_MS` is checked (`DO 0`) when it is checked
//!   out, and replaced if it is dead; the pool hands out the most recently used connection
//!   first, so under load connections never get old enough to be checked.
//! - A query whose connection turns out to be dead anyway (it died within that time) is run once
//!   more on a fresh connection. Every `work` given to [`Db::run`] is therefore written to be
//!   safe to repeat: reads, and an INSERT that recognises its own row (`users::insert`). A
//!   query that *timed out* is not repeated: the server may still be running it.
//!
//! A query the server *answered* with an error leaves a healthy connection, which goes back to
//! the pool: otherwise any client could force reconnects by sending data the server rejects.
//! Such an error is a duplicate key, a value the table cannot store ([`DbError::Unstorable`]:
//! a 4-byte character in a `utf8`/utf8mb3 column of an adopted Django table), or another refusal
//! ([`DbError::Refused`], e.g. a deadlock or a lock wait timeout, still a 503).

use std::sync::Arc;
use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::pooled_connection::deadpool::{Hook, HookError, Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncMysqlConnection, SimpleAsyncConnection};

use super::closing::{Closer, Closing, source};
use super::error::{DbError, classify};
use crate::config::DatabaseConfig;

/// A pooled connection.
pub type Conn = Object<AsyncMysqlConnection>;

/// The pauses between attempts to open a connection the server refused: 25 ms, doubling up to
/// 200 ms, until `DB_TIMEOUT_MS`.
const CONNECT_RETRY_FIRST: Duration = Duration::from_millis(25);
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(200);

/// The pool and the time we allow each step.
#[derive(Clone)]
pub struct Db {
    pool: Pool<AsyncMysqlConnection>,
    timeout: Duration,
    /// Declared after `pool`: when the last clone goes, the pool gives its idle connections
    /// back first, then the source closes them with `COM_QUIT` (`closing.rs`).
    _closer: Arc<Closer>,
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
    /// answers 503) even while MariaDB is still coming up. Its connections are closed properly
    /// when the last clone is dropped; `closing` counts it until they are.
    pub fn build(config: &DatabaseConfig, closing: &Closing) -> anyhow::Result<Self> {
        let source = source(&config.url, config.pool_size)
            .map_err(|e| anyhow::anyhow!("DATABASE_URL: {e}"))?;
        let manager = manager(&config.url, source.clone());
        let (idle_check, timeout) = (config.idle_check, config.timeout);
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .queue_mode(deadpool::managed::QueueMode::Lifo)
            .pre_recycle(Hook::async_fn(move |conn, metrics| {
                let idle = metrics.last_used();
                Box::pin(async move {
                    if idle < idle_check {
                        return Ok(());
                    }
                    check_alive(conn, timeout).await.map_err(|e| {
                        tracing::info!(?idle, error = %e, "replacing a dead idle database connection");
                        HookError::message(e)
                    })
                })
            }))
            .wait_timeout(Some(config.timeout))
            .create_timeout(Some(config.timeout))
            .recycle_timeout(Some(config.timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the database pool: {e}"))?;
        close_idle(&pool, config.max_idle);
        Ok(Self {
            pool,
            timeout: config.timeout,
            _closer: Arc::new(closing.track(source)),
        })
    }

    /// A connection from the pool, or `Unavailable` within the timeout. A new connection that
    /// could not be opened (MariaDB restarting: its port is closed for a second or two) is tried
    /// again after a short pause until the timeout, so a request arriving during a restart
    /// waits it out instead of answering 503 at once. The driver's error does not tell a closed
    /// port from a wrong password, so a misconfigured service also waits the timeout before
    /// its 503; start-up's migrations report that case at once.
    pub async fn connection(&self) -> Result<Conn, DbError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut pause = CONNECT_RETRY_FIRST;
        loop {
            match self.pool.get().await {
                Ok(conn) => return Ok(conn),
                Err(deadpool::managed::PoolError::Backend(e))
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::debug!(error = %e, "database refused a new connection; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(CONNECT_RETRY_MAX);
                }
                Err(e) => {
                    return Err(DbError::Unavailable(anyhow::anyhow!(
                        "database connection: {e}"
                    )));
                }
            }
        }
    }

    /// Check out a connection and run `work` on it within the timeout, then decide the
    /// connection's fate ([`classify`]): back to the pool on success and whenever the server
    /// answered (the connection is fine), thrown away with the idle ones on a connection-level
    /// failure, thrown away alone on a diesel-side failure. One call is one checkout, so a
    /// caller never holds a connection across slow work of its own (bcrypt).
    ///
    /// `work` runs a second time, on a fresh connection, when its connection was found dead
    /// (see the module's notes): it must be safe to repeat.
    pub async fn run<T>(
        &self,
        work: impl AsyncFn(&mut AsyncMysqlConnection) -> diesel::QueryResult<T>,
    ) -> Result<T, DbError> {
        match self.attempt(&work).await {
            Err(Attempt::ConnectionLost(e)) => {
                tracing::info!(error = %e, "database connection lost; repeating the query on a fresh one");
                self.attempt(&work).await.map_err(Attempt::into_error)
            }
            other => other.map_err(Attempt::into_error),
        }
    }

    /// One checkout and one run of `work` (see [`Db::run`]).
    async fn attempt<T>(
        &self,
        work: &impl AsyncFn(&mut AsyncMysqlConnection) -> diesel::QueryResult<T>,
    ) -> Result<T, Attempt> {
        let mut conn = self.connection().await.map_err(Attempt::Final)?;
        let outcome = tokio::time::timeout(self.timeout, work(&mut *conn)).await;
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => match classify(e) {
                failure @ DbError::Unavailable(_) => {
                    self.discard(conn);
                    Err(Attempt::ConnectionLost(failure))
                }
                failure @ DbError::Failed(_) => {
                    drop(Object::take(conn));
                    Err(Attempt::Final(failure))
                }
                failure => Err(Attempt::Final(failure)),
            },
            Err(_) => {
                self.discard(conn);
                Err(Attempt::Final(DbError::Unavailable(anyhow::anyhow!(
                    "database query took longer than {:?}",
                    self.timeout
                ))))
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

/// Close `pool`'s connections left unused for `max_idle` (`DB_MAX_IDLE_MS`), with `COM_QUIT`
/// through their source, before the server's `wait_timeout` cuts them and logs each as an
/// aborted connection. A task on the runtime the pool is built on (the worker's, whose sockets
/// these are), checking a few times per `max_idle`; it ends with the pool.
fn close_idle(pool: &Pool<AsyncMysqlConnection>, max_idle: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let pool = pool.weak();
    let every = (max_idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    drop(runtime.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(pool) = pool.upgrade() else {
                return;
            };
            let closed = pool.retain(|_, metrics| metrics.last_used() < max_idle);
            if !closed.removed.is_empty() {
                tracing::debug!(
                    closed = closed.removed.len(),
                    "closed database connections idle for {max_idle:?}"
                );
            }
        }
    }));
}

/// deadpool's manager of diesel connections, each made from a connection of `source` (so that
/// it ends with `COM_QUIT` when deadpool drops it).
fn manager(
    url: &str,
    source: mysql_async::Pool,
) -> AsyncDieselConnectionManager<AsyncMysqlConnection> {
    let mut manager_config = ManagerConfig::<AsyncMysqlConnection>::default();
    manager_config.recycling_method = RecyclingMethod::Fast;
    manager_config.custom_setup = Box::new(move |_url| {
        let source = source.clone();
        Box::pin(async move {
            let conn = source
                .get_conn()
                .await
                .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
            AsyncMysqlConnection::try_from(conn).await
        })
    });
    AsyncDieselConnectionManager::new_with_config(url, manager_config)
}

/// How one attempt of [`Db::run`] failed.
enum Attempt {
    /// The connection broke under the query (an I/O or protocol error, the server went away):
    /// worth one more attempt on a fresh connection.
    ConnectionLost(DbError),
    /// Anything else, including a timeout (the server may still be running the query) and a
    /// failed checkout (a fresh connection would fail the same way).
    Final(DbError),
}

impl Attempt {
    fn into_error(self) -> DbError {
        match self {
            Self::ConnectionLost(e) | Self::Final(e) => e,
        }
    }
}

/// The liveness check of a connection that sat idle: one cheap statement, bounded by the query
/// timeout (a connection whose server went away may otherwise wait for TCP to notice).
async fn check_alive(conn: &mut AsyncMysqlConnection, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, conn.batch_execute("DO 0")).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}
