//! `POST /users/` and Django: the password never reaches MariaDB in plain text, the hashes are Django's, and a table Django made keeps its field errors.

use super::*;

#[tokio::test]
async fn the_password_never_reaches_mariadb_in_plain_text_not_even_in_the_first_insert() {
    let app = spawn_app().await;
    // The harness's shared server is ours to log on; only statements naming this test's unique
    // user are looked at.
    app.db.query("SET GLOBAL log_output = 'TABLE'");
    app.db.query("SET GLOBAL general_log = 1");
    let username = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let password = format!("P{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    app.store_sms_code(MOBILE, CODE);
    let mut body = registration(&username, MOBILE, CODE);
    body["password"] = json!(password);
    body["password2"] = json!(password);
    let res = app.register(&body).await;
    assert_eq!(res.status(), 201);
    let statements = app.db.query(&format!(
        "SELECT command_type, CONVERT(argument USING utf8mb4) FROM mysql.general_log \
         WHERE (CONVERT(argument USING utf8mb4) LIKE '%{username}%' OR CONVERT(argument USING utf8mb4) LIKE '%{password}%') \
         AND CONVERT(argument USING utf8mb4) NOT LIKE '%general_log%'"
    ));
    let inserts: Vec<&Vec<String>> = statements
        .iter()
        .filter(|r| r[1].to_ascii_uppercase().contains("INSERT INTO"))
        .collect();
    assert_eq!(inserts.len(), 1, "{statements:?}");
    assert!(
        inserts[0][1].contains("bcrypt_sha256$$2b$10$"),
        "{:?}",
        inserts[0]
    );
    assert!(
        statements.iter().all(|r| !r[1].contains(&password)),
        "the plain password was sent to MariaDB: {statements:?}"
    );
    assert!(
        statements
            .iter()
            .all(|r| !r[1].to_ascii_uppercase().contains("UPDATE")),
        "the row is written once: {statements:?}"
    );
    app.db.query("SET GLOBAL general_log = 0");
}

#[tokio::test]
async fn django_accepts_our_stored_hashes_and_we_accept_djangos() {
    let app = spawn_app().await;
    app.store_sms_code(MOBILE, CODE);
    let password = "密码 pass ✓ 1";
    let mut body = registration("django12", MOBILE, CODE);
    body["password"] = json!(password);
    body["password2"] = json!(password);
    assert_eq!(app.register(&body).await.status(), 201);
    let stored = app
        .db
        .scalar("SELECT password FROM tb_users")
        .expect("a row");
    let verify = "print(h.verify(sys.argv[1], sys.argv[2]))";
    assert_eq!(passlib(verify, &[password, &stored]), "True");
    assert_eq!(passlib(verify, &["密码 pass ✓ 2", &stored]), "False");

    let theirs = passlib("print(h.using(rounds=10).hash(sys.argv[1]))", &[password]);
    assert!(theirs.starts_with("bcrypt_sha256$$2b$10$"), "{theirs}");
    assert!(users_svc::domain::password::verify(password, &theirs));
    assert!(!users_svc::domain::password::verify(
        "密码 pass ✓ 2",
        &theirs
    ));
}

#[tokio::test]
async fn duplicates_on_unique_indexes_named_like_djangos_are_still_field_errors() {
    // Two instances on one database: within one, registrations of a name wait for each other
    // (and see the row), so it takes two to race to the INSERT as separate machines do.
    let app = spawn_app().await;
    let other = app.second_instance().await;
    // A table made by Django names its unique indexes after the columns.
    app.db.query(
        "ALTER TABLE tb_users RENAME INDEX tb_users_username_uniq TO username, \
         RENAME INDEX tb_users_mobile_uniq TO mobile",
    );
    let bodies: Vec<Value> = (0..10)
        .map(|i| {
            let mobile = format!("1390000{i:04}");
            app.store_sms_code(&mobile, CODE);
            registration("samename1", &mobile, CODE)
        })
        .collect();
    let instances = [app.address.clone(), other];
    let results = futures::future::join_all(bodies.iter().enumerate().map(|(i, b)| {
        let request = app
            .http
            .post(format!("{}/users/", instances[i % 2]))
            .json(b)
            .send();
        async { status_and_json(request.await.expect("request sent")).await }
    }))
    .await;
    assert_one_created(
        &results,
        &json!({"username": ["已存在一位使用该名字的用户。"]}),
    );
    // More than one hash ran: requests past the pre-check met the index at the INSERT.
    let mut hashes = 0;
    for instance in &instances {
        let metrics = app
            .http
            .get(format!("{instance}/metrics"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("metrics")
            .text()
            .await
            .expect("metrics");
        hashes += metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(r#"users_password_hash_seconds_count{service="users-svc"} "#)
            })
            .and_then(|n| n.parse::<u64>().ok())
            .expect("hash count");
    }
    assert!(hashes > 1, "{hashes} hashes");
    assert_eq!(app.user_count(), 1);
}
