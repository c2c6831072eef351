//! The `App` every service starts from, the way every route is registered, and the JSON 404
//! and 405 answers.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use super::error::ApiError;
use super::extractors::configure_extractors;

/// `App::default_service`: every unknown route is `404 {"detail": "Not found."}`.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// The `App` every service starts from: load shedding ([`super::admission`]) inside CORS (so a
/// browser can read the 503), CORS inside the observation middleware (so preflights and shed
/// requests are logged and counted too), the shared metrics registry, the admission bound and
/// CORS origins as app data, the
/// extractor error handlers, and the JSON 404 for unknown routes. The service adds its own app
/// data and `.configure(routes::configure)`.
pub fn app(
    metrics: web::Data<crate::metrics::Metrics>,
    cors: web::Data<crate::cors::AllowedOrigins>,
    admission: web::Data<super::Admission>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    use actix_web::middleware::from_fn;
    actix_web::App::new()
        .wrap(from_fn(super::admit))
        .wrap(from_fn(crate::cors::cors))
        .wrap(from_fn(crate::telemetry::observe))
        .app_data(cors)
        .app_data(admission)
        .app_data(metrics)
        .configure(configure_extractors)
        .default_service(web::to(not_found))
}

/// A resource at `path` that serves `method` with `handler` and answers every other method
/// with DRF's 405 and the `Allow` header RFC 9110 requires, the way every route of every
/// service is registered.
pub fn endpoint<F, Args>(
    path: &str,
    method: actix_web::http::Method,
    handler: F,
) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let allow =
        HeaderValue::from_str(method.as_str()).expect("a method's name is a valid header value");
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(move |req: HttpRequest| {
            let allow = allow.clone();
            async move { method_not_allowed(&req, allow) }
        }))
}

/// A known route with the wrong method: DRF's 405 naming it, with `Allow`. `OPTIONS` is
/// refused like any other method (a CORS preflight is answered before this); DRF would describe
/// the view, which no meiduo client uses.
fn method_not_allowed(req: &HttpRequest, allow: HeaderValue) -> HttpResponse {
    let mut res = ApiError::MethodNotAllowed(req.method().as_str().to_owned()).error_response();
    res.headers_mut().insert(header::ALLOW, allow);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{MAX_BODY_BYTES, parse_object, read_body};
    use actix_web::http::header;
    use actix_web::test::TestRequest;

    /// An app wired the way every service wires it, with one route per extractor.
    async fn app() -> impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    > {
        use actix_web::{App, middleware::from_fn, test};
        #[derive(serde::Deserialize)]
        struct Q {
            #[expect(dead_code, reason = "only its parsing matters here")]
            n: u32,
        }
        #[derive(serde::Deserialize)]
        struct B {
            #[expect(dead_code, reason = "only its parsing matters here")]
            a: String,
        }
        test::init_service(
            App::new()
                .wrap(from_fn(crate::telemetry::observe))
                .configure(configure_extractors)
                .service(endpoint(
                    "/q/",
                    actix_web::http::Method::GET,
                    |_: web::Query<Q>| async { HttpResponse::Ok().finish() },
                ))
                .service(web::resource("/p/{n}/").route(
                    web::get().to(|_: web::Path<u32>| async { HttpResponse::Ok().finish() }),
                ))
                .service(
                    web::resource("/j/").route(
                        web::post().to(|_: web::Json<B>| async { HttpResponse::Ok().finish() }),
                    ),
                )
                .service(web::resource("/body/").route(web::post().to(
                    |req: HttpRequest, payload: web::Payload| async move {
                        let body = read_body(&req, payload).await?;
                        let map = parse_object(&req, &body)?;
                        Ok::<_, ApiError>(HttpResponse::Ok().json(map))
                    },
                )))
                .service(web::resource("/plain/").route(web::get().to(|| async {
                    HttpResponse::BadRequest()
                        .content_type("text/plain")
                        .body("nope")
                })))
                .default_service(web::to(not_found)),
        )
        .await
    }

    async fn call(req: TestRequest) -> (u16, String) {
        let app = app().await;
        let res = actix_web::test::call_service(&app, req.to_request()).await;
        let status = res.status().as_u16();
        let ct = res.headers().get(header::CONTENT_TYPE).cloned();
        let body = actix_web::test::read_body(res).await;
        let body = String::from_utf8(body.to_vec()).expect("utf8");
        if status >= 400 {
            assert_eq!(
                ct.as_ref().and_then(|v| v.to_str().ok()),
                Some("application/json"),
                "{body}"
            );
        }
        (status, body)
    }

    #[actix_web::test]
    async fn every_framework_error_is_drf_json() {
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        let cases: Vec<(&str, TestRequest, u16, String)> = vec![
            ("unknown route", TestRequest::get().uri("/nope/"), 404, r#"{"detail":"Not found."}"#.into()),
            ("path that fails its type", TestRequest::get().uri("/p/abc/"), 404, r#"{"detail":"Not found."}"#.into()),
            ("wrong method", TestRequest::post().uri("/q/"), 405, r#"{"detail":"方法 “POST” 不被允许。"}"#.into()),
            ("wrong method DELETE", TestRequest::delete().uri("/q/"), 405, r#"{"detail":"方法 “DELETE” 不被允许。"}"#.into()),
            ("bad query", TestRequest::get().uri("/q/?n=x"), 400, r#"{"detail":"Query parse error - Query deserialize error: invalid digit found in string"}"#.into()),
            (
                "JSON with the wrong content type",
                TestRequest::post().uri("/j/").insert_header((header::CONTENT_TYPE, "text/plain")).set_payload("{}"),
                415,
                r#"{"detail":"不支持请求中的媒体类型 “text/plain”。"}"#.into(),
            ),
            (
                "JSON that does not parse",
                TestRequest::post().uri("/j/").insert_header((header::CONTENT_TYPE, "application/json")).set_payload("{"),
                400,
                r#"{"detail":"JSON parse error - EOF while parsing an object at line 1 column 1"}"#.into(),
            ),
            (
                "JSON body over 16 KiB",
                TestRequest::post().uri("/j/").insert_header((header::CONTENT_TYPE, "application/json")).set_payload(big.clone()),
                413,
                r#"{"detail":"请求体过大。"}"#.into(),
            ),
            (
                "raw body over 16 KiB",
                TestRequest::post().uri("/body/").insert_header((header::CONTENT_TYPE, "application/json")).set_payload(big),
                413,
                r#"{"detail":"请求体过大。"}"#.into(),
            ),
            (
                "a JSON list",
                TestRequest::post().uri("/body/").insert_header((header::CONTENT_TYPE, "application/json")).set_payload("[1]"),
                400,
                r#"{"non_field_errors":["Invalid data. Expected a dictionary, but got list."]}"#.into(),
            ),
            (
                "an unsupported body type",
                TestRequest::post().uri("/body/").insert_header((header::CONTENT_TYPE, "text/xml")).set_payload("<a/>"),
                415,
                r#"{"detail":"不支持请求中的媒体类型 “text/xml”。"}"#.into(),
            ),
            ("a plain-text error from a handler", TestRequest::get().uri("/plain/"), 400, r#"{"detail":"Bad Request"}"#.into()),
        ];
        for (why, req, status, body) in cases {
            assert_eq!(call(req).await, (status, body), "{why}");
        }
    }

    #[actix_web::test]
    async fn a_405_names_the_allowed_method_in_allow() {
        let app = app().await;
        for method in [
            actix_web::http::Method::POST,
            actix_web::http::Method::HEAD,
            actix_web::http::Method::OPTIONS,
        ] {
            let res = actix_web::test::call_service(
                &app,
                TestRequest::default()
                    .method(method.clone())
                    .uri("/q/")
                    .to_request(),
            )
            .await;
            assert_eq!(res.status().as_u16(), 405, "{method}");
            assert_eq!(
                res.headers().get(header::ALLOW).map(HeaderValue::as_bytes),
                Some(&b"GET"[..]),
                "{method}"
            );
        }
    }
}
