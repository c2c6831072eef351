//! The `tb_users` schema the embedded migrations create, and their reversibility.

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
