//! Where database connections come from, and how they end: with `COM_QUIT`.
//!
//! `mysql_async` 0.36 says goodbye to the server only from `Conn::disconnect` and from its own
//! pool; a dropped `Conn` is just cut (its `Drop` marks it disconnected before the spawned
//! `disconnect` runs, which then does nothing), and MariaDB logs `Aborted connection … Got an
//! error reading communication packets` for each one. diesel-async's connection does not expose
//! its `Conn`. So every connection is taken from a [`source`]: a `mysql_async` pool that keeps
//! nothing idle (deadpool does the pooling), so each connection given back, when deadpool drops
//! it, is closed at once with `COM_QUIT`, and closing the source ([`Closer`]) waits for the
//! connections still out.
//!
//! Each HTTP worker has its own pool on its own single-threaded runtime, dropped when the worker
//! stops, after its in-flight requests. The goodbye has to run on that runtime, and the process
//! must not exit before it did: actix reports a worker stopped before it drops the worker's
//! services. [`Closing`] counts the sources not yet closed, so `run_until_stopped` can wait for
//! them (bounded) before the process exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// A `mysql_async` pool for at most `max` connections in use that keeps none idle: a
/// connection given back is closed with `COM_QUIT` at once. Options as diesel-async's own
/// connections (it caches statements itself; found rows, not changed rows).
///
/// The bound is twice `max`: a connection given back still counts until its goodbye is done,
/// and one dropped in the middle of a query (a timeout) first reads the rest of its answer, so
/// new connections must not wait for those.
pub(super) fn source(url: &str, max: usize) -> Result<mysql_async::Pool, String> {
    let opts = mysql_async::Opts::from_url(url).map_err(|e| e.to_string())?;
    let constraints = mysql_async::PoolConstraints::new(0, max.max(1).saturating_mul(2))
        .ok_or_else(|| format!("no pool bounds for {max} connections"))?;
    Ok(mysql_async::Pool::new(
        mysql_async::OptsBuilder::from_opts(opts)
            .stmt_cache_size(0)
            .client_found_rows(true)
            .pool_opts(
                mysql_async::PoolOpts::default()
                    .with_constraints(constraints)
                    // Zero: keep `min` (0) idle connections, i.e. close every one given back.
                    .with_inactive_connection_ttl(Duration::ZERO)
                    .with_reset_connection(false),
            ),
    ))
}

/// The connection sources of one service instance that are not closed yet.
#[derive(Debug, Clone, Default)]
pub struct Closing(Arc<Open>);

#[derive(Debug, Default)]
struct Open {
    count: AtomicUsize,
    all_closed: Notify,
}

impl Closing {
    /// Close `source` when the returned [`Closer`] is dropped (see [`Closer`]).
    pub(super) fn track(&self, source: mysql_async::Pool) -> Closer {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        Closer {
            source: Some(source),
            closing: self.clone(),
        }
    }

    /// Wait, at most `limit`, until every tracked source is closed; false if some were not.
    pub async fn wait(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                // Created before the check, so a close in between still wakes it.
                let closed = self.0.all_closed.notified();
                if self.0.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                closed.await;
            }
        })
        .await
        .is_ok()
    }

    fn release(&self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

/// Closes its source when dropped: on the runtime it is dropped on (the connections' sockets
/// belong to it), in a task that ends once every connection still out was given back and said
/// goodbye. Held by the pool that takes connections from the source, after it, so the pool's
/// idle connections are given back first.
pub(super) struct Closer {
    source: Option<mysql_async::Pool>,
    closing: Closing,
}

impl Drop for Closer {
    fn drop(&mut self) {
        let Some(source) = self.source.take() else {
            return;
        };
        // Counted as closed when the task ends, or when it is dropped unfinished (its runtime
        // shut down): then the process need not wait for it any longer.
        let released = Released(self.closing.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(async move {
                if let Err(e) = source.disconnect().await {
                    tracing::debug!(error = %e, "closing database connections");
                }
                drop(released);
            })),
            Err(_) => tracing::warn!("no runtime to close database connections on"),
        }
    }
}

/// Counts one source as closed when dropped.
struct Released(Closing);

impl Drop for Released {
    fn drop(&mut self) {
        self.0.release();
    }
}
