//! A real `mariadbd` for tests.
//!
//! The data folder is made once per test binary with `mariadb-install-db` (about 3 s) and the
//! server tuned for throw-away data (no binary log, no fsync), then each test gets a database of
//! its own, dropped when its [`TestDatabase`] is dropped. SQL the harness itself needs (create
//! and drop a database, read the query log) goes through Debian's `mariadb` client binary, so the
//! harness carries no MySQL driver of its own.

use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use crate::process;

/// A database of its own for one test, on the test binary's shared server.
#[derive(Debug)]
pub struct TestDatabase {
    pub port: u16,
    pub name: String,
}

impl TestDatabase {
    /// `mysql://root@127.0.0.1:<port>/<name>`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/{}", self.port, self.name)
    }

    /// Run SQL in this database and return the rows, tab-separated, one line each (no header).
    /// Panics with the server's message when the SQL fails: tests use it for assertions.
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        let out = client(self.port, Some(&self.name), sql);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }

    /// Run SQL and return the first column of the first row.
    pub fn scalar(&self, sql: &str) -> Option<String> {
        self.query(sql)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort: the whole server goes away at the end of the run anyway.
        let _ = try_client(
            self.port,
            None,
            &format!("DROP DATABASE IF EXISTS `{}`", self.name),
        );
    }
}

/// A fresh, empty database (utf8mb4) for this test on the binary's shared server.
pub fn test_database() -> TestDatabase {
    let port = shared_port();
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    client(
        port,
        None,
        &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
    );
    TestDatabase { port, name }
}

/// The port of the binary's shared server, starting it on first use.
pub fn shared_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let run = process::lock_run_dir();
        let port_file = run.path.join("mariadb.port");
        if let Some(port) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|p| process::wait_for_port(*p, Duration::from_millis(200)))
        {
            return port;
        }
        let dir = run.path.join("mariadb");
        let port = process::free_port();
        let child = start(&dir, port);
        process::start_watchdog(&run.path, &[child.id()]);
        std::fs::write(&port_file, port.to_string()).expect("the port file can be written");
        port
    })
}

/// `deploy/mariadb/my.cnf`: the settings deploy/dev and the benchmarks use too; the harness
/// reads its `_throwaway` group as well (no binary log, no fsync).
const CONFIG: &str = include_str!("../../deploy/mariadb/my.cnf");

/// Initialise a data folder in `dir` (if it has none yet) and start `mariadbd` on `port`,
/// waiting until it answers queries. Used by the harness and by fault tests that need a
/// server of their own to stop and start.
pub fn start(dir: &Path, port: u16) -> Child {
    std::fs::create_dir_all(dir).expect("the server folder can be created");
    let config = dir.join("my.cnf");
    std::fs::write(&config, CONFIG).expect("the MariaDB configuration can be written");
    let defaults = [
        format!("--defaults-file={}", config.display()),
        "--defaults-group-suffix=_throwaway".to_owned(),
    ];
    let data = dir.join("data");
    // Private scratch files: two bootstraps at once sharing /tmp can fail on each other's
    // `#sql-temptable-*` files ("Error on delete of '/tmp/#sql-temptable-…'", seen with two
    // tests starting servers together).
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).expect("the scratch folder can be created");
    let tmpdir = format!("--tmpdir={}", tmp.display());
    if !data.join("mysql").is_dir() {
        std::fs::create_dir_all(&data).expect("the data folder can be created");
        let install = process::find_binary("mariadb-install-db", "mariadb-server");
        let out = Command::new(install)
            .args(&defaults)
            .arg(format!("--datadir={}", data.display()))
            .arg(&tmpdir)
            .args(user_args())
            .output()
            .expect("mariadb-install-db can be run");
        assert!(
            out.status.success(),
            "mariadb-install-db failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bin = process::find_binary("mariadbd", "mariadb-server");
    let mut cmd = Command::new(bin);
    cmd.args(&defaults)
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", dir.join("mariadb.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mariadb.pid").display()))
        .arg(format!("--port={port}"))
        .arg(&tmpdir)
        .args(user_args());
    let mut child = process::spawn_detached(&mut cmd, &dir.join("mariadb.log"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if try_client(port, None, "SELECT 1").is_ok() {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("mariadb.log")).unwrap_or_default();
            panic!("mariadbd exited with {status} before answering:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let log = std::fs::read_to_string(dir.join("mariadb.log")).unwrap_or_default();
    panic!("mariadbd did not answer on port {port} within 30 s:\n{log}");
}

/// Stop a server started by [`start`]: gracefully (SIGTERM: MariaDB closes its connections
/// and shuts down, as `docker restart` does) or as a crash (SIGKILL).
pub fn stop(child: &mut Child, graceful: bool) {
    if graceful {
        crate::redis::terminate(child);
    } else {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The `Aborted connection` warnings in the error log of a server started by [`start`] in `dir`:
/// each is a client that dropped its connection without saying goodbye (`COM_QUIT`).
pub fn aborted_connections(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("mariadb.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Aborted connection"))
        .map(str::to_owned)
        .collect()
}

/// `mariadbd` refuses to run as root unless told to (CI and the dev machine run as root).
fn user_args() -> Vec<String> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if is_root {
        vec!["--user=root".to_owned()]
    } else {
        Vec::new()
    }
}

/// Run SQL as root over TCP through the `mariadb` client.
pub fn try_client(port: u16, database: Option<&str>, sql: &str) -> Result<Output, String> {
    let bin = process::find_binary("mariadb", "mariadb-client");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--no-defaults",
        "--protocol=TCP",
        "-h127.0.0.1",
        "-uroot",
        "--batch",
        "--skip-column-names",
    ])
    .arg(format!("-P{port}"))
    .arg("--connect-timeout=2");
    if let Some(db) = database {
        cmd.arg(db);
    }
    let out = cmd.arg("-e").arg(sql).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn client(port: u16, database: Option<&str>, sql: &str) -> Output {
    try_client(port, database, sql).unwrap_or_else(|e| panic!("SQL failed: {sql}\n{e}"))
}

/// A MariaDB server of the test's own, with an empty `users` database, which it may stop and
/// start again on the same port (fault tests), as [`crate::RedisServer`] is for Redis. Killed
/// when dropped.
#[derive(Debug)]
pub struct MariaDbServer {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<std::process::Child>,
}

impl MariaDbServer {
    /// Start a server with an empty `users` database.
    pub fn start() -> Self {
        let dir = process::scratch_dir();
        let port = process::free_port();
        let child = start(dir.path(), port);
        try_client(port, None, "CREATE DATABASE users CHARACTER SET utf8mb4")
            .expect("create the database");
        Self {
            dir,
            port,
            child: Some(child),
        }
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/users", self.port)
    }

    /// Kill the server (SIGKILL: the connections die as in a crash).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, false);
        }
    }

    /// Start it again on the same port with the same data, after a crash (SIGKILL) or a
    /// graceful shutdown (SIGTERM); returns once it answers queries.
    pub fn restart_after(&mut self, graceful: bool) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, graceful);
        }
        self.child = Some(start(self.dir.path(), self.port));
    }

    /// Stop it, gracefully (SIGTERM) or as in a crash (SIGKILL), keeping its data for
    /// [`MariaDbServer::start_again`].
    pub fn stop_after(&mut self, graceful: bool) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, graceful);
        }
    }

    /// Start a stopped server again on the same port with the same data; returns once it
    /// answers queries.
    pub fn start_again(&mut self) {
        self.stop_after(true);
        self.child = Some(start(self.dir.path(), self.port));
    }

    /// Start it again on the same port with the same data, after a crash.
    pub fn restart(&mut self) {
        self.restart_after(false);
    }

    /// Run SQL in the `users` database.
    pub fn query(&self, sql: &str) -> String {
        let out = try_client(self.port, Some("users"), sql).expect("SQL runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The `Aborted connection` lines of its error log so far (see [`aborted_connections`]).
    pub fn aborted_connections(&self) -> Vec<String> {
        aborted_connections(self.dir.path())
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        self.stop();
    }
}
