//! sms-worker delivers the `SendSmsCode` jobs that verifications-svc queues: it calls the SMS
//! provider over HTTP with retries, timeouts and idempotency, and serves `/healthz`, `/readyz`
//! and `/metrics` on a small HTTP port.

pub mod config;
pub mod startup;
