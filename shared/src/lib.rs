//! Code that two or more meiduo-auth crates need, and nothing else: configuration loading,
//! telemetry, the DRF-compatible error body and its actix-web plumbing, newtypes parsed at the
//! boundary (`Mobile`, `Username`, `ImageCodeId`, `SmsCode`), the Redis key names of the original
//! tutorial, the `SendSmsCode` job payload, the small Redis building blocks (the one client,
//! rate limit), and admission by expected wait for a bounded CPU step.
//!
//! No handlers and no SQL live here.

pub mod client_ip;
pub mod concentration;
pub mod config;
pub mod cors;
pub mod domain;
pub mod drf;
pub mod expected_wait;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod queue;
pub mod rate_limit;
pub mod redis_client;
pub mod redis_pool;
pub mod server;
pub mod shutdown;
pub mod telemetry;
