//! The one Redis client every crate uses: verify codes, the SMS queue (apalis), the rate
//! limiters and the worker's markers. One multiplexed connection per client (per HTTP worker
//! in the services), no pool: a request's commands need no checkout round trip.
//!
//! ## Why not redis-rs' `ConnectionManager`
//! In redis-rs 1.8 (`aio/connection_manager.rs`) the manager only reconnects after a command
//! *failed*: a socket that Redis closed while idle (a restart) is found by the next command,
//! whenever it comes, and that command's `BrokenPipe` goes to the caller
//! (`set_number_of_retries` bounds the reconnect attempts, it never resends the command). Its
//! proactive reconnect hangs on RESP3 disconnect pushes, and RESP3 changes what our Lua scripts
//! return (`false` becomes a boolean, not nil).
//!
//! ## What this client does instead
//! - **A dead connection is replaced before use.** The connection's driver task (the future
//!   `MultiplexedConnection::new_with_config` returns) ends as soon as the socket reports EOF or
//!   an error, also while idle; this client spawns it and flags the connection closed when it
//!   ends. A command never goes out on a flagged connection: it gets a fresh one first. Commands
//!   sent on a closed driver fail without writing anything, so nothing is lost by this.
//! - **A command that finds the connection dead is resent once, only if it may run twice**
//!   ([`Replay`]): reads, idempotent writes and scripts written to be re-run, and rate-limit
//!   hits, where a repeat at worst counts one hit twice ([`Replay::Recount`]). Anything else
//!   (`GETDEL`, `SET NX`, scripts that consume or claim) may have executed before the socket
//!   died, so its error goes to the caller, who knows what to undo.
//! - **Reconnects are serialised and bounded.** One connection attempt at a time per client;
//!   after a failure the next attempt waits 50 ms, doubling up to half the connect timeout. A
//!   command waits for a connection at most the connect timeout, then fails with one of the
//!   errors of [`unreachable`]: a request answers 503 quickly while Redis is down, and
//!   rides through a restart shorter than the timeout.
//! - A response timeout is not a dead connection (Redis may just be slow): it is not resent, and
//!   the connection is kept.
//! - **A Redis that is still loading its data is waited for.** After a restart Redis accepts
//!   connections at once but answers `-LOADING` to every data command until its append-only
//!   file or snapshot is read back (a second or more for a busy instance). A command refused so
//!   was not executed, so it is sent again every [`LOADING_POLL`] until the connect timeout
//!   (counted from its first send) runs out; a pipeline only when it is [`Replay::Safe`] (in
//!   theory the loading can end in the middle of one).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};
use tokio::time::Instant;

/// The first pause after a failed connection attempt; it doubles with each further failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// How often a command refused with `-LOADING` is sent again.
const LOADING_POLL: Duration = Duration::from_millis(20);

/// Whether a command may reach Redis twice. Chosen by the caller for each command or script,
/// with a comment saying why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Running it twice leaves Redis as running it once and gives the same answer: reads,
    /// `SET`/`SETEX`/`DEL` of fixed values, scripts written to be re-run. Resent once on a fresh
    /// connection when the connection turns out dead under it.
    Safe,
    /// A rate-limit hit: a script whose only effect a second run repeats is counting the hit
    /// (`INCR` of a limiter counter; anything else it writes is idempotent, e.g. a `SETEX`).
    /// Resent once like [`Replay::Safe`]: if the first run did execute before the socket died,
    /// the client is counted one hit too many in that window: the strict side of its limit, and
    /// only when Redis dropped the connection under the command (a restart), instead of a 503
    /// for a user who did nothing wrong. Never for a script that consumes or hands out something
    /// (`GETDEL` of a code, a send claim), whose second run would answer differently.
    Recount,
    /// A second run would differ (`GETDEL`, `SET NX`, scripts that consume or claim): never
    /// resent once it may have reached Redis; the caller gets the error.
    Never,
}

impl Replay {
    /// Whether a command that found its connection dead is sent once more on a fresh one.
    fn resends(self) -> bool {
        matches!(self, Self::Safe | Self::Recount)
    }
}

/// Timeouts of a [`RedisClient`].
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long a command waits for a connection (attempts and backoff included).
    pub connect: Duration,
    /// How long a command waits for its answer.
    pub response: Duration,
}

impl Timeouts {
    /// The same bound for both, as `REDIS_TIMEOUT_MS` and `QUEUE_TIMEOUT_MS` configure it.
    pub fn both(timeout: Duration) -> Self {
        Self {
            connect: timeout,
            response: timeout,
        }
    }
}

/// A lazily connecting, self-repairing Redis connection (see the module docs). Clones share the
/// connection; [`RedisClient::replay`] gives a clone with another [`Replay`] policy. Implements
/// `redis::aio::ConnectionLike`, so `query_async`, `invoke_async` and apalis take it as is.
#[derive(Clone)]
pub struct RedisClient {
    inner: Arc<Inner>,
    replay: Replay,
}

struct Inner {
    info: ConnectionInfo,
    /// What this connection is for and where it goes (password hidden), for error texts.
    name: String,
    timeouts: Timeouts,
    live: Mutex<Option<Live>>,
    /// Held while connecting, so one attempt runs at a time; holds the backoff.
    connecting: tokio::sync::Mutex<Backoff>,
}

#[derive(Clone)]
struct Live {
    conn: MultiplexedConnection,
    /// Set when the driver task ended: the socket is gone.
    closed: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
    last_error: String,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("name", &self.inner.name)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// A client of `url` for `purpose` (e.g. "verify codes", "queue": named in error texts).
    /// Nothing connects until the first command. Commands are [`Replay::Never`] unless a
    /// clone from [`RedisClient::replay`] says otherwise.
    pub fn new(url: &str, purpose: &str, timeouts: Timeouts) -> anyhow::Result<Self> {
        let info = url.into_connection_info().map_err(|e| {
            anyhow::anyhow!("{purpose} Redis URL {} is not usable: {e}", redacted(url))
        })?;
        if !matches!(info.addr(), ConnectionAddr::Tcp(..)) {
            anyhow::bail!(
                "{purpose} Redis URL {}: only redis:// over TCP is supported",
                redacted(url)
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                info,
                name: format!("{purpose} Redis at {}", redacted(url)),
                timeouts,
                live: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(Backoff::default()),
            }),
            replay: Replay::Never,
        })
    }

    /// A clone sharing the connection whose commands follow `replay`.
    pub fn replay(&self, replay: Replay) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            replay,
        }
    }

    /// `PING`, for `/readyz`.
    pub async fn ping(&self) -> Result<(), String> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.replay(Replay::Safe))
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The current connection if it is still open.
    fn current(&self) -> Option<Live> {
        let live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        live.as_ref()
            .filter(|l| !l.closed.load(Ordering::Acquire))
            .cloned()
    }

    /// An open connection: the current one, or a new one within the connect timeout.
    async fn connection(&self) -> RedisResult<Live> {
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let deadline = Instant::now() + self.inner.timeouts.connect;
        loop {
            let mut backoff = self.inner.connecting.lock().await;
            // Another command may have connected while this one waited for the lock.
            if let Some(live) = self.current() {
                return Ok(live);
            }
            let now = Instant::now();
            if let Some(at) = backoff.not_before.filter(|at| *at > now) {
                if at >= deadline {
                    return Err(unreachable(&self.inner.name, &backoff.last_error));
                }
                drop(backoff);
                tokio::time::sleep_until(at).await;
                continue;
            }
            match tokio::time::timeout_at(deadline, self.open()).await {
                Ok(Ok(live)) => {
                    *backoff = Backoff::default();
                    *self
                        .inner
                        .live
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(live.clone());
                    return Ok(live);
                }
                Ok(Err(e)) => backoff.failed(now, e.to_string(), self.max_backoff()),
                Err(_) => backoff.failed(
                    now,
                    format!(
                        "no connection within {} ms",
                        self.inner.timeouts.connect.as_millis()
                    ),
                    self.max_backoff(),
                ),
            }
        }
    }

    /// Half the connect timeout: a command arriving at any moment still gets an attempt.
    fn max_backoff(&self) -> Duration {
        (self.inner.timeouts.connect / 2).max(FIRST_BACKOFF)
    }

    /// Connect, hand-shake (AUTH, SELECT) and spawn the driver, which flags the connection
    /// closed when the socket goes away.
    async fn open(&self) -> RedisResult<Live> {
        let ConnectionAddr::Tcp(host, port) = self.inner.info.addr() else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "only redis:// over TCP is supported",
            )));
        };
        let socket = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
        let config =
            AsyncConnectionConfig::new().set_response_timeout(Some(self.inner.timeouts.response));
        let (conn, driver) = MultiplexedConnection::new_with_config(
            self.inner.info.redis_settings(),
            socket,
            config,
        )
        .await?;
        let closed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&closed);
        tokio::spawn(async move {
            driver.await;
            flag.store(true, Ordering::Release);
        });
        Ok(Live { conn, closed })
    }

    /// Send with `send` on an open connection; if that connection turns out dead, flag it and,
    /// for a [`Replay::Safe`] command, send once more on a fresh one.
    async fn run<T, F, Fut>(&self, send: F) -> RedisResult<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let live = self.connection().await?;
        let first = send(live.conn.clone()).await;
        let Err(e) = &first else { return first };
        if !e.is_unrecoverable_error() {
            return first;
        }
        live.closed.store(true, Ordering::Release);
        if !self.replay.resends() || !e.is_connection_dropped() {
            return first;
        }
        tracing::debug!(redis = %self.inner.name, error = %e, "connection found dead; resending a replay-safe command on a new one");
        let live = self.connection().await?;
        let second = send(live.conn.clone()).await;
        if second
            .as_ref()
            .is_err_and(RedisError::is_unrecoverable_error)
        {
            live.closed.store(true, Ordering::Release);
        }
        second
    }
}

impl RedisClient {
    /// [`RedisClient::run`], sent again while `loading` says Redis answered `-LOADING`, for at
    /// most the connect timeout.
    async fn run_while_loading<T, F, Fut>(
        &self,
        loading: fn(&RedisResult<T>) -> bool,
        send: F,
    ) -> RedisResult<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let deadline = Instant::now() + self.inner.timeouts.connect;
        loop {
            let result = self.run(&send).await;
            if !(loading(&result) && Instant::now() + LOADING_POLL < deadline) {
                return result;
            }
            tokio::time::sleep(LOADING_POLL).await;
        }
    }
}

/// Whether Redis refused with `-LOADING`: as an error, or (how redis-rs hands back a server's
/// error reply to a command) as the reply value.
fn is_loading(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::BusyLoading))
}

fn is_loading_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::BusyLoading)
}

/// A single command refused while loading was not executed: always safe to send again.
fn command_loading(result: &RedisResult<Value>) -> bool {
    match result {
        Ok(value) => is_loading(value),
        Err(e) => is_loading_error(e),
    }
}

/// A pipeline with a refused command in it.
fn pipeline_loading(result: &RedisResult<Vec<Value>>) -> bool {
    match result {
        Ok(values) => values.iter().any(is_loading),
        Err(e) => is_loading_error(e),
    }
}

/// Never resent.
fn never<T>(_: &RedisResult<T>) -> bool {
    false
}

impl Backoff {
    fn failed(&mut self, at: Instant, error: String, max: Duration) {
        self.failures = self.failures.saturating_add(1);
        let factor = 2u32.saturating_pow(self.failures.saturating_sub(1).min(16));
        self.not_before = Some(at + FIRST_BACKOFF.saturating_mul(factor).min(max));
        self.last_error = error;
    }
}

/// What the detail of [`unreachable`]'s errors says after the client's name.
const CANNOT_CONNECT: &str = ": cannot connect (";

/// The error of a command that found no connection within the connect timeout.
fn unreachable(name: &str, cause: &str) -> RedisError {
    RedisError::from((
        ErrorKind::Io,
        "Redis unreachable",
        format!("{name}{CANNOT_CONNECT}{cause})"),
    ))
}

/// Whether `e` says the command found no connection: it never reached Redis, so a caller has
/// nothing of it to undo (and, Redis being down, no round trip to spend on trying).
pub fn never_sent(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Io && e.detail().is_some_and(|d| d.contains(CANNOT_CONNECT))
}

impl ConnectionLike for RedisClient {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(
            self.run_while_loading(command_loading, move |mut conn| async move {
                conn.send_packed_command(cmd).await
            }),
        )
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        // In theory the loading can end in the middle of a pipeline: resent only when Safe.
        let loading = if self.replay == Replay::Safe {
            pipeline_loading
        } else {
            never
        };
        Box::pin(self.run_while_loading(loading, move |mut conn| async move {
            conn.send_packed_commands(pipeline, offset, count).await
        }))
    }

    fn get_db(&self) -> i64 {
        self.inner.info.redis_settings().db()
    }
}

/// A URL with its password replaced, for log lines.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted("redis://:secret@host:6379/2"),
            "redis://***@host:6379/2"
        );
        assert_eq!(redacted("mysql://u:p@h/db"), "mysql://***@h/db");
        assert_eq!(
            redacted("redis://127.0.0.1:6379/2"),
            "redis://127.0.0.1:6379/2"
        );
    }

    #[test]
    fn a_client_builds_without_connecting_and_rejects_what_it_cannot_reach() {
        RedisClient::new(
            "redis://127.0.0.1:1/0",
            "test",
            Timeouts::both(Duration::from_millis(100)),
        )
        .expect("lazy");
        let err = RedisClient::new(
            "redis+unix:///tmp/r.sock",
            "test",
            Timeouts::both(Duration::from_millis(100)),
        )
        .expect_err("unix sockets are not supported");
        assert!(err.to_string().contains("only redis:// over TCP"), "{err}");
    }

    #[tokio::test]
    async fn nothing_listening_is_one_unreachable_error_within_the_connect_timeout() {
        let client = RedisClient::new(
            "redis://127.0.0.1:1/0",
            "verify codes",
            Timeouts::both(Duration::from_millis(200)),
        )
        .expect("lazy");
        let err = client.ping().await.expect_err("nothing listens on port 1");
        assert!(
            err.starts_with("Redis unreachable - Io: verify codes Redis at redis://127.0.0.1:1/0: cannot connect ("),
            "{err}"
        );
        let err = redis::cmd("GET")
            .arg("k")
            .query_async::<Option<String>>(&mut client.replay(Replay::Never))
            .await
            .expect_err("unreachable");
        assert!(never_sent(&err), "{err}");
        let other = RedisError::from((ErrorKind::Io, "broken pipe"));
        assert!(!never_sent(&other));
    }

    #[test]
    fn the_backoff_doubles_up_to_its_bound() {
        let mut b = Backoff::default();
        let t = Instant::now();
        let max = Duration::from_millis(500);
        let mut waits = Vec::new();
        for _ in 0..6 {
            b.failed(t, "x".into(), max);
            waits.push((b.not_before.expect("set") - t).as_millis());
        }
        assert_eq!(waits, [50, 100, 200, 400, 500, 500]);
    }
}
