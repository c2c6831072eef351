//! A real `redis-server` for tests.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{self, RunDir};

/// Databases configured on test servers: each test takes one, so many tests can share a server.
const DATABASES: u32 = 4096;

/// Where `SAVE` writes (Redis' default `dbfilename`, in the server's `--dir`), and where a
/// start loads data from.
const DUMP_FILE: &str = "dump.rdb";

/// A Redis database of its own for one test, on the test binary's shared server.
#[derive(Debug, Clone)]
pub struct TestRedis {
    pub port: u16,
    pub db: u32,
}

impl TestRedis {
    /// `redis://127.0.0.1:<port>/<db>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/{}", self.port, self.db)
    }

    /// A client for assertions on this test's database.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a redis:// URL is valid")
    }
}

/// This test's own database on the shared server: its number comes from a counter on the
/// server, and it is flushed before use, so no two tests of a run ever see each other's keys.
pub fn test_redis() -> TestRedis {
    let port = shared_port();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).expect("valid URL");
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .expect("the harness Redis accepts connections");
    let n: u32 = redis::cmd("INCR")
        .arg("harness:next_db")
        .query(&mut conn)
        .expect("INCR works");
    let db = 1 + (n - 1) % (DATABASES - 1);
    redis::pipe()
        .cmd("SELECT")
        .arg(db)
        .cmd("FLUSHDB")
        .query::<()>(&mut conn)
        .expect("SELECT and FLUSHDB work");
    TestRedis { port, db }
}

fn shared_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let run = process::lock_run_dir();
        let port_file = run.path.join("redis.port");
        if let Some(port) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|p| process::wait_for_port(*p, Duration::from_millis(200)))
        {
            return port;
        }
        let dir = run.path.join("redis");
        std::fs::create_dir_all(&dir).expect("the redis folder can be created");
        let port = process::free_port();
        let child = spawn(&dir, port);
        process::start_watchdog(&run.path, &[child.id()]);
        std::fs::write(&port_file, port.to_string()).expect("the port file can be written");
        keep_lock_until_written(run);
        port
    })
}

fn keep_lock_until_written(run: RunDir) {
    drop(run);
}

/// `deploy/redis/redis.conf`: the settings deploy/dev and the benchmarks use too (loopback only,
/// `maxmemory` with `noeviction`, no persistence).
const CONFIG: &str = include_str!("../../deploy/redis/redis.conf");

fn spawn(dir: &std::path::Path, port: u16) -> Child {
    let config = dir.join("redis.conf");
    std::fs::write(&config, CONFIG).expect("the Redis configuration can be written");
    let bin = process::find_binary("redis-server", "redis-server");
    let mut cmd = Command::new(bin);
    cmd.arg(&config)
        .arg("--port")
        .arg(port.to_string())
        .args(["--loglevel", "warning"])
        .arg("--databases")
        .arg(DATABASES.to_string())
        .arg("--dir")
        .arg(dir)
        .arg("--pidfile")
        .arg(dir.join("redis.pid"));
    let mut child = process::spawn_detached(&mut cmd, &dir.join("redis.log"));
    if !process::wait_for_port(port, Duration::from_secs(10)) {
        let _ = child.kill();
        let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
        panic!("redis-server did not start on port {port}:\n{log}");
    }
    child
}

/// A Redis server owned by one test, which may stop and restart it (same port, so clients
/// configured with its URL reconnect to the new process). Killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Start a new server on a free port.
    pub fn start() -> Self {
        let dir = process::scratch_dir();
        let port = process::free_port();
        let child = spawn(dir.path(), port);
        // The watchdog watches this test process (not the runner): the server is this test's.
        watch_own_process(dir.path().to_path_buf(), child.id());
        Self {
            port,
            dir,
            child: Some(child),
        }
    }

    /// `redis://127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Stop the server (SIGTERM, then wait).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    /// Start it again on the same port with an empty data set.
    pub fn restart(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(self.dir.path().join(DUMP_FILE));
        self.start_again();
    }

    /// Write the data set to disk (`SAVE`), then stop: like stopping a Redis that persists its
    /// data. [`RedisServer::start_again`] loads it back.
    pub fn stop_keeping_data(&mut self) {
        if self.child.is_some() {
            let mut conn = redis::Client::open(self.url(0))
                .expect("a redis:// URL is valid")
                .get_connection_with_timeout(Duration::from_secs(5))
                .expect("the test's Redis accepts connections");
            redis::cmd("SAVE")
                .query::<()>(&mut conn)
                .expect("SAVE works");
        }
        self.stop();
    }

    /// Stop and start again on the same port with the same data, at once: what
    /// `docker restart` does to a Redis that persists its data. Clients connected before
    /// find their sockets closed.
    pub fn restart_keeping_data(&mut self) {
        self.stop_keeping_data();
        self.start_again();
    }

    /// Hold every write (`CLIENT PAUSE WRITE`: scripts and writes wait, unexecuted, while
    /// reads and this test's admin commands go on), so a test can cut connections with a
    /// write in flight ([`WritesHeld::drop_a_waiting_write_and_wait_for_its_resend`]). Writes
    /// go on when the guard is dropped or [`WritesHeld::release`]d.
    pub fn hold_writes(&self) -> WritesHeld {
        let mut admin = redis::Client::open(self.url(0))
            .expect("a redis:// URL is valid")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("the test's Redis accepts connections");
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(60_000)
            .arg("WRITE")
            .query::<()>(&mut admin)
            .expect("CLIENT PAUSE WRITE works (Redis 6.2+)");
        WritesHeld { admin }
    }

    /// Start a stopped server again on the same port, with whatever data it saved.
    pub fn start_again(&mut self) {
        self.stop();
        let child = spawn(self.dir.path(), self.port);
        watch_own_process(self.dir.path().to_path_buf(), child.id());
        self.child = Some(child);
    }
}

/// Writes held by [`RedisServer::hold_writes`].
pub struct WritesHeld {
    admin: redis::Connection,
}

impl std::fmt::Debug for WritesHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WritesHeld")
    }
}

impl WritesHeld {
    /// The ids of the clients that wait with a held write (flag `b` in `CLIENT LIST`).
    fn waiting_clients(&mut self) -> Vec<u64> {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut self.admin)
            .expect("CLIENT LIST works");
        list.lines()
            .filter(|l| {
                l.split(' ')
                    .any(|f| f.starts_with("flags=") && f.contains('b'))
            })
            .filter_map(|l| l.strip_prefix("id="))
            .filter_map(|l| l.split(' ').next()?.parse().ok())
            .collect()
    }

    /// Wait (up to ten seconds) until a client other than those in `seen` waits with a held
    /// write; its id.
    fn wait_for_a_waiting_client(&mut self, seen: &[u64]) -> Option<u64> {
        for _ in 0..1000 {
            if let Some(id) = self
                .waiting_clients()
                .into_iter()
                .find(|id| !seen.contains(id))
            {
                return Some(id);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Close the connection of every other client (`CLIENT KILL TYPE normal SKIPME yes`), as a
    /// restarting Redis or a dropped link does: a held write on it was never executed, and its
    /// client sees the socket closed with no answer.
    fn drop_connections_with_writes_waiting(&mut self) {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query::<u64>(&mut self.admin)
            .expect("CLIENT KILL works");
    }

    /// What a restart does to a client with a write in flight, and whether it resends: wait
    /// for a held write, close every client's connection under it (the held write on it is
    /// never executed), then wait for a held write on a new connection. `Err` says which of
    /// the two never came.
    pub fn drop_a_waiting_write_and_wait_for_its_resend(&mut self) -> Result<(), &'static str> {
        let first = self
            .wait_for_a_waiting_client(&[])
            .ok_or("no write reached Redis")?;
        self.drop_connections_with_writes_waiting();
        self.wait_for_a_waiting_client(&[first])
            .map(drop)
            .ok_or("the write was not sent again on a new connection")
    }

    /// Let the held writes (and every later one) go on.
    pub fn release(self) {}
}

impl Drop for WritesHeld {
    fn drop(&mut self) {
        let _ = redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query::<()>(&mut self.admin);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM a child and reap it; SIGKILL if it takes more than five seconds.
pub fn terminate(child: &mut Child) {
    crate::process::signal(child.id(), "TERM");
    for _ in 0..500 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A watchdog for a server a single test owns: if the test process dies without running
/// destructors (abort, SIGKILL), the server still goes away.
fn watch_own_process(dir: PathBuf, pid: u32) {
    process::kill_after_exit_of(
        std::process::id(),
        &[pid.to_string()],
        &dir.join(format!("watchdog-{pid}.log")),
    );
}
