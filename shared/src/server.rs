//! The skeleton every HTTP service's `Application` is built on: a listener bound before
//! anything runs (so a test can ask for port 0 and learn the port), and a server that serves
//! until SIGTERM/SIGINT, finishing in-flight requests first.

use std::net::TcpListener;

use actix_web::dev::Server;

use crate::config::Listen;

/// Seconds actix gives in-flight requests after SIGTERM/SIGINT before it closes them.
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Bind `listen`'s address; returns the listener and the port actually bound.
pub fn bind(listen: &Listen) -> anyhow::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind(listen.address())
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", listen.address()))?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

/// A bound, not yet running, server: the inside of each service's `Application`.
pub struct Bound {
    port: u16,
    server: Server,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Bound {
    /// `server`, built on the listener [`bind`] returned for `port`; logs that `service` listens.
    pub fn new(service: &str, port: u16, server: Server) -> Self {
        tracing::info!(port, "{service} listening");
        Self { port, server }
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serve until SIGTERM/SIGINT; in-flight requests are finished first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
