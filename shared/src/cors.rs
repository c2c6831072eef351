//! CORS for front ends served from another origin (the original meiduo front end runs on
//! `www.meiduo.site:8080` and calls the API on `api.meiduo.site:8000`, with django-cors-headers
//! and credentials allowed).
//!
//! Allowed origins come from `CORS_ALLOWED_ORIGINS` (comma-separated, exact `scheme://host[:port]`
//! matches); the default is none, because through the gateway the page and the API share one
//! origin. A request from an origin not on the list gets no CORS headers at all, so the browser
//! blocks it; the request itself is answered as usual.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use crate::config::Env;

/// The origins allowed to call the API from a browser.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// Read `CORS_ALLOWED_ORIGINS`; each item must look like `http(s)://host[:port]`.
    pub fn from_env(env: &mut Env) -> Self {
        let mut origins = Vec::new();
        for item in env.list("CORS_ALLOWED_ORIGINS", "") {
            let item = item.trim_end_matches('/').to_owned();
            let valid = (item.starts_with("http://") || item.starts_with("https://"))
                && !item
                    .split_once("://")
                    .is_some_and(|(_, rest)| rest.is_empty() || rest.contains('/'));
            if valid {
                origins.push(item);
            } else {
                env.invalid(
                    "CORS_ALLOWED_ORIGINS",
                    format!("{item:?} is not an origin like https://www.meiduo.site"),
                );
            }
        }
        Self(origins)
    }

    /// Allow exactly these origins.
    pub fn new(origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self(origins.into_iter().map(Into::into).collect())
    }

    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o == origin)
    }
}

/// The CORS middleware; use with `actix_web::middleware::from_fn(cors)` and put an
/// [`AllowedOrigins`] in `app_data` (wrapped in `web::Data`). Without it, nothing is allowed.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let allowed = origin.as_deref().is_some_and(|o| {
        req.app_data::<web::Data<AllowedOrigins>>()
            .is_some_and(|a| a.allows(o))
    });
    let Some(origin) = origin.filter(|_| allowed) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };

    let is_preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if is_preflight {
        let requested_headers = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned();
        let mut res = HttpResponse::Ok();
        res.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"));
        if let Some(h) = requested_headers {
            res.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, h));
        }
        let mut res = req.into_response(res.finish()).map_into_right_body();
        add_origin_headers(res.headers_mut(), &origin);
        return Ok(res);
    }

    let mut res = next.call(req).await?.map_into_left_body();
    add_origin_headers(res.headers_mut(), &origin);
    Ok(res)
}

fn add_origin_headers(headers: &mut header::HeaderMap, origin: &str) {
    if let Ok(v) = header::HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        // The meiduo front end sends cookies/credentials (django-cors-headers
        // CORS_ALLOW_CREDENTIALS = True), so the origin is echoed, never `*`.
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::HeaderValue::from_static("true"),
        );
        headers.append(header::VARY, header::HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, middleware::from_fn, test as atest};

    fn hv(h: &header::HeaderMap, name: header::HeaderName) -> &str {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<missing>")
    }

    #[test]
    fn origins_are_read_and_checked() {
        let mut env = Env::from_vars([(
            "CORS_ALLOWED_ORIGINS",
            "http://www.meiduo.site:8080/, https://a.example, ftp://x, http://x/path",
        )]);
        let o = AllowedOrigins::from_env(&mut env);
        assert!(o.allows("http://www.meiduo.site:8080"));
        assert!(o.allows("https://a.example"));
        assert!(!o.allows("http://evil.example"));
        let err = env.finish().expect_err("two bad items").to_string();
        assert!(err.contains(r#""ftp://x" is not an origin"#), "{err}");
        assert!(err.contains(r#""http://x/path" is not an origin"#), "{err}");
        assert!(
            AllowedOrigins::from_env(&mut Env::from_vars([("X", "")]))
                .0
                .is_empty()
        );
    }

    #[actix_web::test]
    async fn allowed_origins_get_headers_and_preflights_others_get_none() {
        let app = atest::init_service(
            App::new()
                .wrap(from_fn(cors))
                .app_data(web::Data::new(AllowedOrigins::new([
                    "http://www.meiduo.site:8080",
                ])))
                .route(
                    "/x/",
                    web::get().to(|| async { HttpResponse::Ok().body("ok") }),
                ),
        )
        .await;
        let get = |origin: &'static str| {
            atest::TestRequest::get()
                .uri("/x/")
                .insert_header((header::ORIGIN, origin))
        };

        let res = atest::call_service(&app, get("http://www.meiduo.site:8080").to_request()).await;
        assert_eq!(res.status(), 200);
        let h = res.headers();
        assert_eq!(
            hv(h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "http://www.meiduo.site:8080"
        );
        assert_eq!(hv(h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), "true");
        assert_eq!(hv(h, header::VARY), "Origin");

        let res = atest::call_service(&app, get("http://evil.example").to_request()).await;
        assert_eq!(res.status(), 200);
        assert!(
            !res.headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );

        let preflight = atest::TestRequest::default()
            .method(Method::OPTIONS)
            .uri("/x/")
            .insert_header((header::ORIGIN, "http://www.meiduo.site:8080"))
            .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "POST"))
            .insert_header((header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type"))
            .to_request();
        let res = atest::call_service(&app, preflight).await;
        assert_eq!(res.status(), 200);
        let h = res.headers();
        assert_eq!(
            hv(h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "http://www.meiduo.site:8080"
        );
        assert_eq!(
            hv(h, header::ACCESS_CONTROL_ALLOW_METHODS),
            "GET, POST, OPTIONS"
        );
        assert_eq!(hv(h, header::ACCESS_CONTROL_ALLOW_HEADERS), "content-type");
        assert_eq!(hv(h, header::ACCESS_CONTROL_MAX_AGE), "86400");
    }
}
