//! Waiting for the signals that ask a process to stop (SIGTERM from Docker or systemd, SIGINT
//! from Ctrl-C). HTTP servers get this from actix-web itself; the worker uses [`signal`].

/// Resolves on the first SIGTERM or SIGINT, returning its name for the log.
pub async fn signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler works at start-up");
    let mut int =
        signal(SignalKind::interrupt()).expect("installing a SIGINT handler works at start-up");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
