//! The binary as a process: subcommands, start-up checks, waiting for the database, SIGTERM.

use std::time::Duration;

fn binary() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_users-svc"));
    cmd.env_remove("JWT_SECRET").env("RUST_LOG", "warn");
    cmd
}

#[test]
fn the_migrate_subcommand_applies_and_reverts_without_other_settings() {
    let db = harness::test_database();
    let out = binary()
        .arg("migrate")
        .env("DATABASE_URL", db.url())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        db.scalar("SHOW TABLES LIKE 'tb_users'").as_deref(),
        Some("tb_users")
    );
    let out = binary()
        .args(["migrate", "revert"])
        .env("DATABASE_URL", db.url())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.scalar("SHOW TABLES LIKE 'tb_users'"), None);
}

/// Migrating closes its connection properly (`COM_QUIT`): MariaDB logs no aborted connection,
/// as it did for every start-up (each one migrates first).
#[test]
fn migrating_leaves_no_aborted_connection_in_mariadbs_log() {
    let db = harness::MariaDbServer::start();
    for args in [&["migrate"][..], &["migrate", "revert"], &["migrate"]] {
        let out = binary()
            .args(args)
            .env("DATABASE_URL", db.url())
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        db.query("SHOW TABLES LIKE 'tb_users'"),
        "tb_users",
        "migrated"
    );
    // A cut connection is logged by the server as soon as it reads the closed socket, which
    // the client's exit closed before the next command here started.
    assert_eq!(db.aborted_connections(), Vec::<String>::new());
}

#[test]
fn the_server_refuses_to_start_without_a_jwt_secret_and_names_it_in_one_line() {
    let out = binary()
        .env("PORT", "0")
        .env("BCRYPT_COST", "9")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.trim_end();
    assert!(!line.contains('\n'), "one line: {stderr}");
    assert!(line.contains("JWT_SECRET: is required"), "{stderr}");
    assert!(
        line.contains("BCRYPT_COST=9: must be between 10 and 31"),
        "{stderr}"
    );
}

/// Kills a child process when dropped, so a failing test leaves nothing running.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_server_waits_for_a_database_that_is_still_starting_then_migrates_and_serves() {
    let dir = harness::process::scratch_dir();
    let db_port = harness::process::free_port();
    let http_port = harness::process::free_port();
    let redis = harness::test_redis();
    let _service = Killed(
        binary()
            .env("JWT_SECRET", crate::helpers::JWT_SECRET)
            .env(
                "DATABASE_URL",
                format!("mysql://root@127.0.0.1:{db_port}/users"),
            )
            .env("REDIS_URL", redis.url())
            .env("PORT", http_port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !harness::process::wait_for_port(http_port, Duration::from_millis(100)),
        "no HTTP before the database is migrated"
    );
    let _mariadb = Killed(harness::mariadb::start(dir.path(), db_port));
    harness::mariadb::try_client(db_port, None, "CREATE DATABASE users CHARACTER SET utf8mb4")
        .expect("create the database");
    assert!(
        harness::process::wait_for_port(http_port, Duration::from_secs(30)),
        "the service came up once the database answered"
    );
    let out = harness::mariadb::try_client(db_port, Some("users"), "SHOW TABLES LIKE 'tb_users'")
        .expect("query");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "tb_users");
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_registration_finish_then_exits_0() {
    let db = harness::test_database();
    let redis = harness::test_redis();
    let http_port = harness::process::free_port();
    let mut service = Killed(
        binary()
            .env("JWT_SECRET", crate::helpers::JWT_SECRET)
            .env("DATABASE_URL", db.url())
            .env("REDIS_URL", redis.url())
            .env("PORT", http_port.to_string())
            // About half a second per hash: the request is surely in flight at the signal.
            .env("BCRYPT_COST", "13")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );
    assert!(harness::process::wait_for_port(
        http_port,
        Duration::from_secs(30)
    ));
    redis::cmd("SETEX")
        .arg("sms_13800138000")
        .arg(300)
        .arg("123456")
        .query::<()>(&mut redis.client().get_connection().expect("redis"))
        .expect("SETEX");
    let http = harness::http_client();
    let request = http
        .post(format!("http://127.0.0.1:{http_port}/users/"))
        .json(&crate::helpers::registration(
            "sigterm1",
            "13800138000",
            "123456",
        ))
        .send();
    let signal = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(harness::process::signal(service.0.id(), "TERM"));
    };
    let (res, ()) = tokio::join!(request, signal);
    assert_eq!(res.expect("answered, not cut off").status(), 201);
    let mut exit = None;
    for _ in 0..100 {
        exit = service.0.try_wait().expect("wait works");
        if exit.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "exited cleanly");
    assert_eq!(
        db.scalar("SELECT username FROM tb_users").as_deref(),
        Some("sigterm1")
    );
}

/// Stopping closes the HTTP workers' database connections properly (`COM_QUIT`): after a
/// SIGTERM with pooled connections open in both workers, MariaDB logs no aborted connection.
/// (Before, every pooled connection was cut when the process exited.)
#[tokio::test]
async fn sigterm_closes_every_pooled_database_connection_with_a_goodbye() {
    let db = harness::MariaDbServer::start();
    let redis = harness::test_redis();
    let http_port = harness::process::free_port();
    let mut service = Killed(
        binary()
            .env("JWT_SECRET", crate::helpers::JWT_SECRET)
            .env("DATABASE_URL", db.url())
            .env("REDIS_URL", redis.url())
            .env("PORT", http_port.to_string())
            .env("HTTP_WORKERS", "2")
            .env("BCRYPT_COST", "10")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the binary starts"),
    );
    assert!(harness::process::wait_for_port(
        http_port,
        Duration::from_secs(30)
    ));
    redis::cmd("SETEX")
        .arg("sms_13800138001")
        .arg(300)
        .arg("123456")
        .query::<()>(&mut redis.client().get_connection().expect("redis"))
        .expect("SETEX");
    let http = harness::http_client();
    let base = format!("http://127.0.0.1:{http_port}");
    let registered = http
        .post(format!("{base}/users/"))
        .json(&crate::helpers::registration(
            "goodbye1",
            "13800138001",
            "123456",
        ))
        .send()
        .await
        .expect("answered");
    assert_eq!(registered.status(), 201);
    assert_eq!(db.query("SELECT username FROM tb_users"), "goodbye1");
    // Concurrent lookups on fresh connections (one client connection each), so that both
    // workers open several pooled connections.
    counts_at_once(&base, "someone").await;
    let open = threads_connected(&db);
    assert!(open >= 3, "pooled connections open besides ours: {open}");
    assert!(harness::process::signal(service.0.id(), "TERM"));
    let mut exit = None;
    for _ in 0..100 {
        exit = service.0.try_wait().expect("wait works");
        if exit.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "exited cleanly");
    // The server logs a cut connection when its thread reads the closed socket, before the
    // thread ends: once only our own connection is left, every warning is in the log.
    for _ in 0..100 {
        if threads_connected(&db) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        threads_connected(&db),
        1,
        "the service's connections are gone"
    );
    assert_eq!(db.aborted_connections(), Vec::<String>::new());
}

/// MariaDB's count of open client connections (this query's own included).
fn threads_connected(db: &harness::MariaDbServer) -> usize {
    let row = db.query("SHOW STATUS LIKE 'Threads_connected'");
    row.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count: {row}"))
}

/// A pooled connection left unused for `DB_MAX_IDLE_MS` is closed by the service with a
/// goodbye before the server's `wait_timeout` cuts it (here 2 s; before, each was then logged
/// as an aborted connection, as after every quiet night at the default 8 h).
#[tokio::test]
async fn idle_pooled_connections_are_closed_with_a_goodbye_before_the_servers_wait_timeout() {
    let db = harness::MariaDbServer::start();
    db.query("SET GLOBAL wait_timeout = 2");
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        database_url: Some(db.url()),
        ..crate::helpers::Options::env(&[("DB_MAX_IDLE_MS", "300")])
    })
    .await;
    counts_at_once(&app.address, "idle").await;
    // Closed by either side, the connections go: then every warning is in the log.
    for _ in 0..100 {
        if threads_connected(&db) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(threads_connected(&db), 1, "the idle connections are gone");
    assert_eq!(db.aborted_connections(), Vec::<String>::new());
    // And the service still answers, on a fresh connection.
    let (status, body) =
        crate::helpers::status_and_json(app.get("/usernames/idle0/count/").await).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"username": "idle0", "count": 0}))
    );
}

/// Sixteen username counts at once, each on a fresh client connection (so the service opens
/// several pooled database connections), for `{prefix}0` … `{prefix}15`: each answers 200, 0.
async fn counts_at_once(base: &str, prefix: &str) {
    let lookups = (0..16).map(|i| {
        let http = harness::http_client();
        let url = format!("{base}/usernames/{prefix}{i}/count/");
        async move {
            let res = http.get(url).send().await.expect("answered");
            (i, crate::helpers::status_and_json(res).await)
        }
    });
    for (i, answer) in futures::future::join_all(lookups).await {
        let name = format!("{prefix}{i}");
        assert_eq!(
            answer,
            (200, serde_json::json!({"username": name, "count": 0}))
        );
    }
}
