//! The actix-web plumbing that makes every error a DRF-shaped JSON body, one concern a file:
//! [`ApiError`] (what handlers return, `error.rs`), the extractor configs
//! ([`configure_extractors`], `extractors.rs`), the `App` with its default 404 and 405 handlers
//! (`app.rs`), load shedding by requests in flight ([`Admission`], `admission.rs`), request-body reading with a size limit and the JSON/form parser that reproduces
//! DRF's parser errors (`body.rs`), and the health answers (`health.rs`).
//!
//! A last safety net lives in [`crate::telemetry::observe`]: any error response that still is not
//! JSON (an actix-internal error, say) is rewritten to `{"detail": ...}` there.

mod admission;
mod app;
mod body;
mod error;
mod extractors;
mod health;

pub use admission::{Admission, SHED_RETRY_AFTER_SECS, admit};
pub use app::{app, endpoint, not_found};
pub use body::{MAX_BODY_BYTES, parse_object, read_body};
pub use error::{ApiError, UNAVAILABLE_RETRY_AFTER_SECS};
pub use extractors::{configure_extractors, json_parse_error};
pub use health::{healthz, readiness};
