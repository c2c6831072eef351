//! The `tb_users` schema the embedded migrations create, their reversibility, and the adoption
//! of a `tb_users` that a Django meiduo made before users-svc first started.

use serde_json::json;

use crate::helpers::{Options, registration, spawn_app, spawn_app_with, status_and_json};

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
    // What `migrate revert` reads to know the table is its own to drop (down.sql).
    assert_eq!(
        app.db
            .scalar(
                "SELECT TABLE_COMMENT FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'tb_users'"
            )
            .as_deref(),
        Some("created by users-svc")
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

/// `tb_users` as Django 2.2's `sqlmigrate users 0001` makes it for the meiduo `User`
/// (`AbstractUser` + `mobile = CharField(max_length=11, unique=True)`, `db_table = 'tb_users'`):
/// `id integer`, `first_name varchar(30)`, no column defaults, the inline UNIQUEs named after
/// their columns, the table's collation the database's, and the groups table referring to it
/// (the constraint names carry Django's digests of the table and column names).
const DJANGO_TB_USERS: &str = "\
CREATE TABLE `tb_users` (`id` integer AUTO_INCREMENT NOT NULL PRIMARY KEY, \
`password` varchar(128) NOT NULL, `last_login` datetime(6) NULL, `is_superuser` bool NOT NULL, \
`username` varchar(150) NOT NULL UNIQUE, `first_name` varchar(30) NOT NULL, \
`last_name` varchar(150) NOT NULL, `email` varchar(254) NOT NULL, `is_staff` bool NOT NULL, \
`is_active` bool NOT NULL, `date_joined` datetime(6) NOT NULL, `mobile` varchar(11) NOT NULL UNIQUE);
CREATE TABLE `tb_users_groups` (`id` integer AUTO_INCREMENT NOT NULL PRIMARY KEY, \
`user_id` integer NOT NULL, `group_id` integer NOT NULL);
ALTER TABLE `tb_users_groups` ADD CONSTRAINT `tb_users_groups_user_id_group_id_5a177a84_uniq` \
UNIQUE (`user_id`, `group_id`);
ALTER TABLE `tb_users_groups` ADD CONSTRAINT `tb_users_groups_user_id_5f9e3ed0_fk_tb_users_id` \
FOREIGN KEY (`user_id`) REFERENCES `tb_users` (`id`);";

/// `SHOW CREATE TABLE tb_users` without the `AUTO_INCREMENT=n` that every insert moves.
fn definition(db: &harness::TestDatabase) -> String {
    db.query("SHOW CREATE TABLE tb_users")
        .concat()
        .join("\t")
        .split(' ')
        .filter(|w| !w.starts_with("AUTO_INCREMENT="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every index of `tb_users` as (name, column, unique).
fn indexes(db: &harness::TestDatabase) -> Vec<Vec<String>> {
    db.query(
        "SELECT INDEX_NAME, COLUMN_NAME, 1 - NON_UNIQUE FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'tb_users' ORDER BY INDEX_NAME",
    )
}

fn rows(strs: &[[&str; 3]]) -> Vec<Vec<String>> {
    strs.iter().map(|r| r.map(str::to_owned).to_vec()).collect()
}

/// A Django shop's account: Django's own columns, a Django `bcrypt_sha256$` hash (from passlib,
/// an independent implementation of Django's hasher), id 7.
fn insert_django_user(db: &harness::TestDatabase, password: &str) -> String {
    let hash = crate::register::passlib("print(h.using(rounds=10).hash(sys.argv[1]))", &[password]);
    assert!(hash.starts_with("bcrypt_sha256$$2b$10$"), "{hash}");
    db.query(&format!(
        "INSERT INTO tb_users (id, password, last_login, is_superuser, username, first_name, \
         last_name, email, is_staff, is_active, date_joined, mobile) VALUES (7, '{hash}', \
         '2026-01-02 03:04:05.000000', 0, 'DjangoUser1', 'Dj', 'Ango', 'dj@example.com', 0, 1, \
         '2025-12-01 10:00:00.000000', '13700137000'); \
         INSERT INTO tb_users_groups (user_id, group_id) VALUES (7, 1)"
    ));
    hash
}

const DJANGO_ROW: &str = "SELECT id, password, IFNULL(last_login, 'NULL'), username, first_name, last_name, \
     email, date_joined, mobile FROM tb_users WHERE id = 7";

#[tokio::test]
async fn an_existing_django_tb_users_is_adopted_with_its_accounts_and_indexes() {
    let db = harness::test_database();
    db.query(DJANGO_TB_USERS);
    let hash = insert_django_user(&db, "django-pass-1");
    let before_definition = definition(&db);
    let before_row = db.query(DJANGO_ROW);
    let app = spawn_app_with(Options {
        database: Some(db),
        ..Options::default()
    })
    .await;

    // Adopted as it is: same definition (no index, column or comment added), same row.
    assert_eq!(definition(&app.db), before_definition);
    assert_eq!(
        indexes(&app.db),
        rows(&[
            ["mobile", "mobile", "1"],
            ["PRIMARY", "id", "1"],
            ["username", "username", "1"]
        ])
    );
    assert_eq!(app.db.query(DJANGO_ROW), before_row);
    assert!(users_svc::domain::password::verify("django-pass-1", &hash));

    let (status, body) = status_and_json(app.get("/usernames/djangouser1/count/").await).await;
    assert_eq!(
        (status, body),
        (200, json!({"username": "djangouser1", "count": 1}))
    );
    let (status, body) = status_and_json(app.get("/mobiles/13700137000/count/").await).await;
    assert_eq!(
        (status, body),
        (200, json!({"mobile": "13700137000", "count": 1}))
    );

    // The Django account's name and mobile are taken: by the pre-check ...
    app.store_sms_code("13900139000", "123456");
    let (status, body) = status_and_json(
        app.register(&registration("DjangoUser1", "13900139000", "123456"))
            .await,
    )
    .await;
    assert_eq!(
        (status, body),
        (400, json!({"username": ["已存在一位使用该名字的用户。"]}))
    );
    let (status, body) = status_and_json(
        app.register(&registration("newuser1", "13700137000", "123456"))
            .await,
    )
    .await;
    assert_eq!(
        (status, body),
        (400, json!({"mobile": ["具有 手机号 的 用户 已存在。"]}))
    );
    // ... and a new account goes in next to it, with Django's id sequence.
    let res = app
        .register(&registration("newuser1", "13900139000", "123456"))
        .await;
    let (status, body) = status_and_json(res).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], 8, "{body}");
    assert_eq!(body["username"], "newuser1");
    assert_eq!(body["mobile"], "13900139000");
    let new = app.db.query(
        "SELECT id, username, mobile, is_superuser, is_staff, is_active, first_name, last_name, \
         email, IFNULL(last_login, 'NULL'), LEFT(password, 21) FROM tb_users WHERE id = 8",
    );
    assert_eq!(
        new,
        [[
            "8",
            "newuser1",
            "13900139000",
            "0",
            "0",
            "1",
            "",
            "",
            "",
            "NULL",
            "bcrypt_sha256$$2b$10$"
        ]]
        .map(|r| r.map(str::to_owned).to_vec())
        .to_vec()
    );
    assert_eq!(app.user_count(), 2);
    assert_eq!(app.redis_get("sms_13900139000"), None, "the code was used");

    // Re-running is a no-op; reverting leaves Django's table, rows and references alone.
    let url = app.db.url();
    assert!(
        users_svc::db::migrate(&url)
            .await
            .expect("re-run")
            .is_empty()
    );
    assert_eq!(
        users_svc::db::revert_last(&url)
            .await
            .expect("revert")
            .len(),
        1
    );
    assert_eq!(definition(&app.db), before_definition);
    assert_eq!(app.db.query(DJANGO_ROW), before_row);
    assert_eq!(app.user_count(), 2);
    assert_eq!(
        app.db
            .scalar("SELECT user_id FROM tb_users_groups")
            .as_deref(),
        Some("7")
    );
    assert_eq!(
        users_svc::db::migrate(&url)
            .await
            .expect("apply again")
            .len(),
        1
    );
    assert_eq!(definition(&app.db), before_definition);
}

#[tokio::test]
async fn an_adopted_table_without_a_unique_mobile_gets_ours_and_revert_removes_only_that() {
    let db = harness::test_database();
    // A Django table whose `mobile` was not declared unique (only indexed, Django's name).
    db.query(&DJANGO_TB_USERS.replace(
        "`mobile` varchar(11) NOT NULL UNIQUE",
        "`mobile` varchar(11) NOT NULL",
    ));
    db.query("CREATE INDEX `tb_users_mobile_8f3d8d27` ON `tb_users` (`mobile`)");
    insert_django_user(&db, "django-pass-1");
    let before_row = db.query(DJANGO_ROW);
    let app = spawn_app_with(Options {
        database: Some(db),
        ..Options::default()
    })
    .await;
    assert_eq!(
        indexes(&app.db),
        rows(&[
            ["PRIMARY", "id", "1"],
            ["tb_users_mobile_8f3d8d27", "mobile", "0"],
            ["tb_users_mobile_uniq", "mobile", "1"],
            ["username", "username", "1"],
        ])
    );
    // Our index names the duplicate directly now.
    app.store_sms_code("13700137000", "123456");
    let (status, body) = status_and_json(
        app.register(&registration("newuser1", "13700137000", "123456"))
            .await,
    )
    .await;
    assert_eq!(
        (status, body),
        (400, json!({"mobile": ["具有 手机号 的 用户 已存在。"]}))
    );

    let url = app.db.url();
    users_svc::db::revert_last(&url).await.expect("revert");
    assert_eq!(
        indexes(&app.db),
        rows(&[
            ["PRIMARY", "id", "1"],
            ["tb_users_mobile_8f3d8d27", "mobile", "0"],
            ["username", "username", "1"],
        ])
    );
    assert_eq!(app.db.query(DJANGO_ROW), before_row);
}

#[tokio::test]
async fn an_adopted_table_without_a_column_the_service_writes_fails_the_migration_by_name() {
    let db = harness::test_database();
    // Plain Django auth, no meiduo `mobile`.
    db.query(&DJANGO_TB_USERS.replace(", `mobile` varchar(11) NOT NULL UNIQUE", ""));
    let err = users_svc::db::migrate(&db.url())
        .await
        .expect_err("the migration refuses the table");
    assert!(format!("{err:#}").contains("mobile"), "{err:#}");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM tb_users").as_deref(),
        Some("0")
    );
}

/// The ids of the service's connections to this test's database (not this query's own).
fn connection_ids(db: &harness::TestDatabase) -> Vec<String> {
    db.query(
        "SELECT ID FROM information_schema.PROCESSLIST \
         WHERE DB = DATABASE() AND ID <> CONNECTION_ID() ORDER BY ID",
    )
    .concat()
}

/// The Django tutorial creates its database with `CHARACTER SET utf8` (utf8mb3), so an adopted
/// `tb_users` cannot store a 4-byte character and MariaDB rejects the query that compares or
/// writes one. That is the request's fault: the count is 0, the registration a field error,
/// and the pooled connections stay (before, each such request answered 503 and closed them).
#[tokio::test]
async fn on_a_utf8mb3_django_table_4_byte_names_count_0_and_are_a_400_without_dropping_the_pool() {
    let db = harness::test_database();
    db.query(&format!(
        "ALTER DATABASE `{}` CHARACTER SET utf8 COLLATE utf8_general_ci",
        db.name
    ));
    db.query(DJANGO_TB_USERS);
    assert_eq!(
        db.scalar(
            "SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = \
             DATABASE() AND TABLE_NAME = 'tb_users' AND COLUMN_NAME = 'username'"
        )
        .as_deref(),
        Some("utf8mb3"),
        "the table is Django's utf8"
    );
    let app = spawn_app_with(Options {
        database: Some(db),
        ..Options::default()
    })
    .await;
    app.store_sms_code("13900139000", "123456");

    // Warm both HTTP workers' pools (concurrent requests spread over the workers).
    let warm =
        futures::future::join_all((0..8).map(|_| app.get("/usernames/alice123/count/"))).await;
    assert!(warm.iter().all(|r| r.status() == 200));
    let before = connection_ids(&app.db);
    assert!(!before.is_empty());

    // A few of each, so that every worker's pool serves some.
    let name = "𠀀𠀀𠀀𠀀𠀀";
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(status_and_json(app.get(&format!("/usernames/{name}/count/")).await).await);
        answers.push(
            status_and_json(
                app.register(&registration(name, "13900139000", "123456"))
                    .await,
            )
            .await,
        );
    }
    // The rejected queries did not close any pooled connection.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let after = connection_ids(&app.db);
    assert!(
        before.iter().all(|id| after.contains(id)),
        "connections closed: before {before:?}, after {after:?}"
    );
    for (i, answer) in answers.into_iter().enumerate() {
        let want = if i % 2 == 0 {
            (200, json!({"username": name, "count": 0}))
        } else {
            (400, json!({"username": ["包含数据库无法保存的字符"]}))
        };
        assert_eq!(answer, want, "request {i}");
    }
    assert_eq!(app.user_count(), 0, "no row");
    assert_eq!(
        app.redis_get("sms_13900139000").as_deref(),
        Some("123456"),
        "a field error does not touch the code"
    );

    // The unstorable name is reported together with the other field errors, the mobile's
    // "taken" included (looked up on its own).
    app.db.query(
        "INSERT INTO tb_users (password, is_superuser, username, first_name, last_name, email, \
         is_staff, is_active, date_joined, mobile) VALUES ('bcrypt_sha256$x', 0, 'alice123', '', \
         '', '', 0, 1, NOW(6), '13700137000')",
    );
    let mut body = registration(name, "13700137000", "123456");
    body["allow"] = json!("false");
    let (status, got) = status_and_json(app.register(&body).await).await;
    assert_eq!(
        (status, got),
        (
            400,
            json!({
                "username": ["包含数据库无法保存的字符"],
                "mobile": ["具有 手机号 的 用户 已存在。"],
                "allow": ["请同意用户协议"],
            })
        )
    );

    // The pool still works: a storable name registers, and the connections are the same.
    let (status, body) = status_and_json(
        app.register(&registration("newuser1", "13900139000", "123456"))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["username"], "newuser1");
    assert_eq!(
        app.db
            .query("SELECT username, mobile FROM tb_users ORDER BY id"),
        rows2(&[["alice123", "13700137000"], ["newuser1", "13900139000"]])
    );
    let last = connection_ids(&app.db);
    assert!(
        before.iter().all(|id| last.contains(id)),
        "connections closed: before {before:?}, at the end {last:?}"
    );
}

fn rows2(strs: &[[&str; 2]]) -> Vec<Vec<String>> {
    strs.iter().map(|r| r.map(str::to_owned).to_vec()).collect()
}

/// The migration's SQL with its `--` comments removed.
fn statements(sql: &str) -> String {
    sql.lines()
        .map(|l| l.split_once("--").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
        .to_uppercase()
}

#[test]
fn the_migrations_use_no_mariadb_only_index_clauses() {
    // MySQL 8 has no `CREATE INDEX IF NOT EXISTS` / `DROP INDEX IF EXISTS`; the adoption tests
    // above prove the information_schema guards do their job on MariaDB without them.
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations/2026-11-27-000001_create_tb_users"
    );
    for file in ["up.sql", "down.sql"] {
        let sql = statements(
            &std::fs::read_to_string(format!("{dir}/{file}")).expect("migration readable"),
        );
        for clause in ["INDEX IF NOT EXISTS", "INDEX IF EXISTS"] {
            assert!(!sql.contains(clause), "{file} uses {clause}");
        }
    }
}
