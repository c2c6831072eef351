//! Test support for every crate of the workspace: real servers, started as child processes.
//!
//! - [`redis`]: a real `redis-server` on a free loopback port. [`test_redis`] gives each test
//!   its own database number on the binary's shared server; [`RedisServer::start`] gives a test
//!   a server of its own that it may stop and restart (fault tests).
//! - [`mariadb`]: a real `mariadbd` (data dir made by `mariadb-install-db`); [`test_database`]
//!   gives each test its own database on the binary's shared server; [`MariaDbServer::start`]
//!   gives a test a server of its own that it may stop and restart (fault tests).
//!
//! ## Lifetime: one server of each kind per test binary, gone when the run ends
//!
//! `cargo nextest` runs every test in a process of its own, so "one server per binary" has to be
//! shared *between processes*. The first test process of a binary starts the servers under a
//! file lock in `/tmp/meiduo-harness/<runner pid>-<binary>/` and writes their ports there; the
//! others read them. Next to the servers runs a small detached watchdog (`sh`) that waits for
//! the test runner (nextest or cargo, the parent of the test process) to exit, then kills the
//! servers and deletes the folder. A panicking test, or a runner killed with SIGKILL, leaves
//! nothing behind. Server output never goes to the test's stdout/stderr (nextest would report
//! the test as leaky); it is in the folder's `*.log` files while the run lasts.

#![expect(
    clippy::zombie_processes,
    reason = "shared test servers deliberately outlive the test process that started them; \
              the watchdog kills them when the test runner exits"
)]

pub mod mariadb;
pub mod process;
pub mod redis;
pub mod service;

pub use mariadb::{MariaDbServer, TestDatabase, test_database};
pub use redis::{RedisServer, TestRedis, test_redis};

/// An HTTP client for tests. reqwest is built without a bundled TLS crypto provider (the
/// workspace uses rustls with *ring*), so the provider is installed once, before the first
/// client is built; building a client without one panics.
pub fn http_client() -> reqwest::Client {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        // Err means another part of the process installed one already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("a plain reqwest client builds once a crypto provider is installed")
}
