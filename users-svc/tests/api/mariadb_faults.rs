//! MariaDB faults as they happen, between two requests of one client: a restart (crash or
//! graceful) and a connection that breaks after the server committed an INSERT but before its
//! answer arrived. The user sees a normal answer every time, and nothing is lost or doubled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{Options, TestApp, registration, spawn_app_with, status_and_json};

const CODE: &str = "123456";

/// `GET path` answers 200 with exactly `want`.
async fn assert_ok(app: &TestApp, path: &str, want: Value) {
    let (status, body) = status_and_json(app.get(path).await).await;
    assert_eq!((status, body), (200, want), "{path}");
}

/// A registration answers 201 with exactly the row's id, the names and a token, and the row
/// exists once.
async fn assert_registers(
    app: &TestApp,
    db: &harness::MariaDbServer,
    username: &str,
    mobile: &str,
) {
    app.store_sms_code(mobile, CODE);
    let (status, body) =
        status_and_json(app.register(&registration(username, mobile, CODE)).await).await;
    let id: Option<i64> = db
        .query(&format!(
            "SELECT id FROM tb_users WHERE username = '{username}' AND mobile = '{mobile}'"
        ))
        .parse()
        .ok();
    let token = body["token"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        (status, body),
        (
            201,
            json!({"id": id, "username": username, "mobile": mobile, "token": token})
        )
    );
    assert!(!token.is_empty());
    assert_eq!(app.redis_get(&format!("sms_{mobile}")), None, "code used");
}

/// Requests spread over both HTTP workers (each has its own pool), all answered 200.
async fn assert_both_workers_answer(app: &TestApp, mobile: &str, count: i64) {
    let path = format!("/mobiles/{mobile}/count/");
    let answers = futures::future::join_all((0..8).map(|_| app.get(&path))).await;
    for res in answers {
        let (status, body) = status_and_json(res).await;
        assert_eq!(
            (status, body),
            (200, json!({"mobile": mobile, "count": count}))
        );
    }
}

/// With the idle check on every checkout (`DB_IDLE_CHECK_MS=1`) the dead connections are found
/// before a query goes out; with it off in practice, the query that finds its connection dead
/// is repeated on a fresh one. Both ways, neither a read nor a registration right after a
/// restart sees an error, whether MariaDB crashed or shut down.
#[tokio::test]
async fn a_mariadb_restart_between_two_requests_of_one_client_costs_it_nothing() {
    let mut db = harness::MariaDbServer::start();
    for (round, idle_check) in [(1, "1"), (2, "3600000")] {
        let app = spawn_app_with(Options {
            database_url: Some(db.url()),
            ..Options::env(&[("DB_IDLE_CHECK_MS", idle_check)])
        })
        .await;
        for (step, graceful) in [(1, false), (2, true)] {
            let mobile = format!("1380000{round}{step}00");
            assert_both_workers_answer(&app, &mobile, 0).await;
            assert_ok(
                &app,
                &format!("/mobiles/{mobile}/count/"),
                json!({"mobile": mobile, "count": 0}),
            )
            .await;
            db.restart_after(graceful);
            let username = format!("restart{round}{step}");
            assert_registers(&app, &db, &username, &mobile).await;
            // Graceful: the harness's MariaDB trades durability for speed (no flush at
            // commit), so a crash could lose the row just written.
            db.restart_after(true);
            assert_ok(
                &app,
                &format!("/usernames/{username}/count/"),
                json!({"username": username, "count": 1}),
            )
            .await;
            assert_both_workers_answer(&app, &mobile, 1).await;
        }
    }
    assert_eq!(db.query("SELECT COUNT(*) FROM tb_users"), "4");
}

/// A request that arrives while MariaDB is down for a restart (its port closed) waits, within
/// `DB_TIMEOUT_MS`, for the server to take connections again instead of answering 503.
#[tokio::test]
async fn a_request_that_arrives_while_mariadb_restarts_waits_for_it() {
    let mut db = harness::MariaDbServer::start();
    let app = spawn_app_with(Options {
        database_url: Some(db.url()),
        ..Options::env(&[("DB_TIMEOUT_MS", "30000")])
    })
    .await;
    let path = "/mobiles/13800000999/count/";
    let want = json!({"mobile": "13800000999", "count": 0});
    assert_ok(&app, path, want.clone()).await;
    db.stop_after(true);
    // Sent while the server is down; it comes back while the request waits.
    let (answer, db) = tokio::join!(
        async { status_and_json(app.get(path).await).await },
        async {
            tokio::task::spawn_blocking(move || {
                db.start_again();
                db
            })
            .await
            .expect("restarted")
        }
    );
    assert_eq!(answer, (200, want));
    assert_eq!(db.query("SELECT COUNT(*) FROM tb_users"), "0");
}

/// The registration's INSERT is committed, then the connection breaks before the answer
/// arrives (a proxy between the service and MariaDB swallows the answer and closes both
/// sides). The service repeats the INSERT on a fresh connection; the repeat hits the unique
/// indexes, and the service recognises the row as its own: the user gets the 201 of the one
/// account, not "taken".
#[tokio::test]
async fn a_registration_whose_commit_answer_was_lost_is_201_with_its_one_row() {
    let db = harness::MariaDbServer::start();
    let proxy = CuttingProxy::start(db.port).await;
    // Through the proxy over TCP: by default mysql_async moves a loopback connection to the
    // server's Unix socket, which would bypass it.
    let url = format!(
        "mysql://root@127.0.0.1:{}/users?prefer_socket=false",
        proxy.port
    );
    let app = spawn_app_with(Options {
        database_url: Some(url),
        ..Options::default()
    })
    .await;
    proxy.arm();
    assert_registers(&app, &db, "lostreply1", "13800138000").await;
    assert_eq!(proxy.cuts(), 1, "the answer of one INSERT was swallowed");
    assert_eq!(db.query("SELECT COUNT(*) FROM tb_users"), "1");
}

/// A TCP proxy to MariaDB that, when armed, lets the next prepared INSERT execute and then
/// drops the server's answer and closes both connections: the fault "committed, but the client
/// never heard".
struct CuttingProxy {
    port: u16,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

/// MySQL protocol command bytes.
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;

impl CuttingProxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (a, c) = (Arc::clone(&armed), Arc::clone(&cuts));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(("127.0.0.1", upstream))
                    .await
                    .expect("MariaDB accepts");
                tokio::spawn(relay(client, server, Arc::clone(&a), Arc::clone(&c)));
            }
        });
        Self { port, armed, cuts }
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// Relay one connection, packet by packet from the client (to see the commands), as bytes
/// from the server.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let cut = Arc::new(AtomicBool::new(false));
    let upstream = {
        let cut = Arc::clone(&cut);
        async move {
            let mut pending = Vec::new();
            let mut insert_prepared = false;
            let mut chunk = [0_u8; 16 * 1024];
            loop {
                let n = from_client.read(&mut chunk).await.unwrap_or(0);
                if n == 0 || cut.load(Ordering::SeqCst) {
                    return;
                }
                pending.extend_from_slice(&chunk[..n]);
                while pending.len() >= 4 {
                    let len = usize::from(pending[0])
                        | usize::from(pending[1]) << 8
                        | usize::from(pending[2]) << 16;
                    if pending.len() < 4 + len {
                        break;
                    }
                    let packet: Vec<u8> = pending.drain(..4 + len).collect();
                    // A command is the first packet of an exchange (sequence id 0).
                    if packet[3] == 0 && len > 0 {
                        match packet[4] {
                            COM_STMT_PREPARE => {
                                insert_prepared = packet[5..].starts_with(b"INSERT");
                            }
                            COM_STMT_EXECUTE
                                if insert_prepared && armed.swap(false, Ordering::SeqCst) =>
                            {
                                // Set before the INSERT leaves: its answer is the next thing
                                // the server sends.
                                cut.store(true, Ordering::SeqCst);
                                cuts.fetch_add(1, Ordering::SeqCst);
                            }
                            _ => {}
                        }
                    }
                    if to_server.write_all(&packet).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let downstream = async move {
        let mut chunk = [0_u8; 16 * 1024];
        loop {
            let n = from_server.read(&mut chunk).await.unwrap_or(0);
            if n == 0 || cut.load(Ordering::SeqCst) {
                // Swallow the answer and close the client's side.
                let _ = to_client.shutdown().await;
                return;
            }
            if to_client.write_all(&chunk[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(upstream, downstream);
}
