//! docs/openapi.json against the real routes: the gateway serves the document, every documented
//! operation answers its documented success status (with a body of the documented shape) for a
//! valid call, and every other method on a documented path is the documented 405.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::stack::{Reply, Stack, random_mobile, random_username, workspace_root};

fn document() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("docs/openapi.json"))
        .expect("docs/openapi.json exists");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

fn operation_id(op: &Value) -> String {
    op["operationId"]
        .as_str()
        .expect("every operation has an operationId")
        .to_owned()
}

/// Follow a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {r}"));
            resolve(doc, target)
        }
        None => node,
    }
}

/// Check `value` against the subset of JSON Schema the document uses (type, required,
/// properties, additionalProperties, items, enum, minimum/maximum, minLength/maxLength).
fn check_schema(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} not in {allowed:?}"));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(obj) = value.as_object() else {
                errors.push(format!("{at}: not an object: {value}"));
                return;
            };
            for key in schema["required"].as_array().into_iter().flatten() {
                let key = key.as_str().unwrap_or_default();
                if !obj.contains_key(key) {
                    errors.push(format!("{at}: missing required {key}"));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => check_schema(doc, s, v, &format!("{at}.{k}"), errors),
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            errors.push(format!("{at}: undocumented property {k}"));
                        }
                        Some(s @ Value::Object(_)) => {
                            check_schema(doc, s, v, &format!("{at}.{k}"), errors);
                        }
                        _ => {}
                    },
                }
            }
        }
        Some("array") => match value.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_schema(doc, &schema["items"], item, &format!("{at}[{i}]"), errors);
                }
            }
            None => errors.push(format!("{at}: not an array: {value}")),
        },
        Some("string") => match value.as_str() {
            Some(s) => {
                let n = s.chars().count() as u64;
                if schema["minLength"].as_u64().is_some_and(|m| n < m)
                    || schema["maxLength"].as_u64().is_some_and(|m| n > m)
                {
                    errors.push(format!("{at}: length {n} out of the documented range"));
                }
            }
            None => errors.push(format!("{at}: not a string: {value}")),
        },
        Some("integer") => match value.as_i64() {
            Some(n) => {
                if schema["minimum"].as_i64().is_some_and(|m| n < m)
                    || schema["maximum"].as_i64().is_some_and(|m| n > m)
                {
                    errors.push(format!("{at}: {n} out of the documented range"));
                }
            }
            None => errors.push(format!("{at}: not an integer: {value}")),
        },
        _ => {}
    }
}

/// The documented response for `status` of an operation, resolved.
fn documented_response<'a>(doc: &'a Value, op: &'a Value, status: u16) -> &'a Value {
    let node = op["responses"].get(status.to_string()).unwrap_or_else(|| {
        panic!(
            "status {status} is not documented for {}",
            op["operationId"]
        )
    });
    resolve(doc, node)
}

/// The reply matches the documented response: content type, and the JSON body's schema.
fn assert_documented(doc: &Value, op: &Value, reply: &Reply) {
    let response = documented_response(doc, op, reply.status);
    let content = response["content"].as_object().expect("documented content");
    let media = content
        .get(reply.content_type.split(';').next().unwrap_or_default())
        .unwrap_or_else(|| {
            panic!(
                "{}: content type {} is not documented ({:?})",
                op["operationId"],
                reply.content_type,
                content.keys().collect::<Vec<_>>()
            )
        });
    if reply.content_type.starts_with("application/json") {
        let mut errors = Vec::new();
        check_schema(doc, &media["schema"], &reply.json(), "body", &mut errors);
        assert!(errors.is_empty(), "{}: {errors:?}", op["operationId"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_exists_and_answers_as_documented() {
    let stack = Stack::start().await;
    let doc = document();
    let client = harness::http_client();

    // The gateway serves the document itself.
    let served = Reply::of(client.get(stack.url("/openapi.json"))).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.content_type, "application/json");
    assert_eq!(served.json(), doc, "/openapi.json is docs/openapi.json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));

    // Every operation, called validly in the order the flow needs.
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    let mut exercised = BTreeSet::new();
    let mobile = random_mobile();
    let username = random_username();

    let image = op("/image_codes/{image_code_id}/", "get");
    let (image_code_id, text) = {
        let id = uuid::Uuid::new_v4().to_string();
        let reply = Reply::of(client.get(stack.url(&format!("/image_codes/{id}/")))).await;
        assert_eq!(reply.status, 200);
        assert_documented(&doc, &image, &reply);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let text = stack.captcha_text(&id).await;
        (id, text)
    };
    exercised.insert(operation_id(&image));

    let sms = op("/sms_codes/{mobile}/", "get");
    let reply = stack
        .send_sms(&client, &mobile, &image_code_id, &text)
        .await;
    assert_eq!(reply.status, 200);
    assert_documented(&doc, &sms, &reply);
    exercised.insert(operation_id(&sms));
    // A documented error answer has the documented shape too.
    let reply = stack
        .send_sms(&client, &mobile, &image_code_id, &text)
        .await;
    assert_eq!(reply.status, 400);
    assert_documented(&doc, &sms, &reply);

    for (path, url) in [
        (
            "/usernames/{username}/count/",
            format!("/usernames/{username}/count/"),
        ),
        (
            "/mobiles/{mobile}/count/",
            format!("/mobiles/{mobile}/count/"),
        ),
    ] {
        let count = op(path, "get");
        let reply = Reply::of(client.get(stack.url(&url))).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_documented(&doc, &count, &reply);
        exercised.insert(operation_id(&count));
    }

    let register = op("/users/", "post");
    let code = stack.sms_code_from_inbox(&mobile).await;
    let reply = stack
        .register(&username, "openapi-pass-1", &mobile, &code)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.json());
    assert_documented(&doc, &register, &reply);
    exercised.insert(operation_id(&register));
    let reply = Reply::of(client.post(stack.url("/users/")).json(&json!({}))).await;
    assert_eq!(reply.status, 400);
    assert_documented(&doc, &register, &reply);

    // Nothing documented was left out of the walk above.
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("a path item").values())
        .map(operation_id)
        .collect();
    assert_eq!(
        documented, exercised,
        "every documented operation was called"
    );

    // Every undocumented method on a documented path is the documented 405, never a 404.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let concrete = path
            .replace("{image_code_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{mobile}", "13800138000")
            .replace("{username}", "someone_else");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                continue;
            }
            let reply = Reply::of(client.request(
                method.to_uppercase().parse().expect("a method"),
                stack.url(&concrete),
            ))
            .await;
            let documented_op = item
                .as_object()
                .and_then(|o| o.values().next())
                .expect("an op");
            assert_eq!(
                reply.status,
                405,
                "{method} {path}: {}",
                String::from_utf8_lossy(&reply.body)
            );
            assert_documented(&doc, documented_op, &reply);
            assert_eq!(
                reply.json(),
                json!({"detail": format!("方法 “{}” 不被允许。", method.to_uppercase())})
            );
        }
    }
}
