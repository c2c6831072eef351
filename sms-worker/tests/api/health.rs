use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_answers_200_json() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("body"), r#"{"status":"ok"}"#);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_drf_json() {
    let app = spawn_app().await;
    let res = app.get("/nope/").await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.text().await.expect("body"),
        r#"{"detail":"Not found."}"#
    );
    let res = app
        .http
        .post(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 405);
    assert_eq!(
        res.text().await.expect("body"),
        r#"{"detail":"方法 “POST” 不被允许。"}"#
    );
}
