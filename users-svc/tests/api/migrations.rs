use crate::helpers::spawn_app;

fn columns(app: &crate::helpers::TestApp) -> Vec<Vec<String>> {
    app.db.query(
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, IFNULL(COLLATION_NAME, '') FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'tb_users' ORDER BY ORDINAL_POSITION",
    )
}

#[tokio::test]
async fn tb_users_has_djangos_columns_and_the_unique_indexes() {
    let app = spawn_app().await;
    let want = [
        ["id", "bigint(20)", "NO", ""],
        ["password", "varchar(128)", "NO", "utf8mb4_unicode_520_ci"],
        ["last_login", "datetime(6)", "YES", ""],
        ["is_superuser", "tinyint(1)", "NO", ""],
        ["username", "varchar(150)", "NO", "utf8mb4_unicode_520_ci"],
        ["first_name", "varchar(150)", "NO", "utf8mb4_unicode_520_ci"],
        ["last_name", "varchar(150)", "NO", "utf8mb4_unicode_520_ci"],
        ["email", "varchar(254)", "NO", "utf8mb4_unicode_520_ci"],
        ["is_staff", "tinyint(1)", "NO", ""],
        ["is_active", "tinyint(1)", "NO", ""],
        ["date_joined", "datetime(6)", "NO", ""],
        ["mobile", "varchar(11)", "NO", "utf8mb4_unicode_520_ci"],
    ];
    assert_eq!(
        columns(&app),
        want.map(|r| r.map(str::to_owned).to_vec()).to_vec()
    );
    let unique = app.db.query(
        "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME = 'tb_users' AND NON_UNIQUE = 0 ORDER BY INDEX_NAME",
    );
    assert_eq!(
        unique,
        [
            ["PRIMARY", "id"],
            ["tb_users_mobile_uniq", "mobile"],
            ["tb_users_username_uniq", "username"]
        ]
        .map(|r| r.map(str::to_owned).to_vec())
        .to_vec()
    );
}

#[tokio::test]
async fn migrations_are_idempotent_and_reversible() {
    let app = spawn_app().await;
    let url = app.db.url();
    assert!(
        users_svc::db::migrate(&url)
            .await
            .expect("re-run")
            .is_empty(),
        "nothing pending"
    );
    let reverted = users_svc::db::revert_last(&url).await.expect("revert");
    assert_eq!(reverted.len(), 1);
    assert_eq!(app.db.scalar("SHOW TABLES LIKE 'tb_users'"), None);
    let applied = users_svc::db::migrate(&url).await.expect("apply again");
    assert_eq!(applied, reverted);
    assert_eq!(
        app.db.scalar("SHOW TABLES LIKE 'tb_users'").as_deref(),
        Some("tb_users")
    );
}

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
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        !harness::process::wait_for_port(http_port, std::time::Duration::from_millis(100)),
        "no HTTP before the database is migrated"
    );
    let _mariadb = Killed(harness::mariadb::start(dir.path(), db_port));
    harness::mariadb::try_client(db_port, None, "CREATE DATABASE users CHARACTER SET utf8mb4")
        .expect("create the database");
    assert!(
        harness::process::wait_for_port(http_port, std::time::Duration::from_secs(30)),
        "the service came up once the database answered"
    );
    let out = harness::mariadb::try_client(db_port, Some("users"), "SHOW TABLES LIKE 'tb_users'")
        .expect("query");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "tb_users");
}

#[tokio::test]
async fn the_count_queries_are_single_row_lookups_on_the_unique_indexes() {
    let app = spawn_app().await;
    app.insert_user("alice123", "13800138000");
    for (column, value, index) in [
        ("username", "ALICE123", "tb_users_username_uniq"),
        ("mobile", "13800138000", "tb_users_mobile_uniq"),
    ] {
        // The statement diesel sends, on a utf8mb4 connection like mysql_async's.
        let plan = app.db.query(&format!(
            "SET NAMES utf8mb4; EXPLAIN SELECT COUNT(*) FROM `tb_users` WHERE (`tb_users`.`{column}` = '{value}')"
        ));
        // id, select_type, table, type, possible_keys, key, key_len, ref, rows, Extra
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert_eq!(plan[0][3], "const", "{column}: {plan:?}");
        assert_eq!(plan[0][5], index, "{column}: {plan:?}");
    }
}
