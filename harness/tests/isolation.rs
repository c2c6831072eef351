//! The harness gives every test its own Redis database and its own MariaDB database, so tests
//! running at the same time never see each other's data. These tests write the same key and the
//! same table name at the same time, and each must read back only its own value.

use std::sync::Barrier;

fn write_then_read_own_data(value: &str, barrier: &Barrier) -> (String, Vec<Vec<String>>) {
    let redis = harness::test_redis();
    let db = harness::test_database();
    let mut conn = redis.client().get_connection().expect("redis connection");
    db.query("CREATE TABLE t (v VARCHAR(20) NOT NULL)");
    // Both tests have written before either reads.
    redis::cmd("SET")
        .arg("same_key")
        .arg(value)
        .exec(&mut conn)
        .expect("SET");
    db.query(&format!("INSERT INTO t VALUES ('{value}')"));
    barrier.wait();
    let got: String = redis::cmd("GET")
        .arg("same_key")
        .query(&mut conn)
        .expect("GET");
    (got, db.query("SELECT v FROM t"))
}

#[test]
fn two_tests_writing_the_same_key_and_table_in_parallel_see_only_their_own_data() {
    let barrier = Barrier::new(2);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| write_then_read_own_data("first", &barrier));
        let b = s.spawn(|| write_then_read_own_data("second", &barrier));
        (a.join().expect("thread a"), b.join().expect("thread b"))
    });
    assert_eq!(a, ("first".to_owned(), vec![vec!["first".to_owned()]]));
    assert_eq!(b, ("second".to_owned(), vec![vec!["second".to_owned()]]));
}

#[test]
fn a_dropped_test_database_is_gone_from_the_server() {
    let db = harness::test_database();
    let name = db.name.clone();
    let port = db.port;
    drop(db);
    let out = harness::mariadb::try_client(port, None, &format!("SHOW DATABASES LIKE '{name}'"))
        .expect("query runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

#[test]
fn a_private_redis_server_can_be_stopped_and_restarted_on_the_same_port() {
    let mut server = harness::RedisServer::start();
    let client = redis::Client::open(server.url(0)).expect("url");
    let mut conn = client.get_connection().expect("connect");
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .exec(&mut conn)
        .expect("SET");
    server.stop();
    assert!(
        redis::cmd("PING").exec(&mut conn).is_err(),
        "stopped server answers nothing"
    );
    server.restart();
    let mut conn = client.get_connection().expect("reconnect");
    let got: Option<String> = redis::cmd("GET").arg("k").query(&mut conn).expect("GET");
    assert_eq!(got, None, "a restarted server starts empty");
}
