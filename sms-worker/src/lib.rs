//! sms-worker delivers the `SendSmsCode` jobs that verifications-svc queues: it calls the SMS
//! providers over HTTP with retries, timeouts and idempotency, and serves `/healthz`, `/readyz`
//! and `/metrics` on a small HTTP port.
//!
//! - [`consumer`]: the apalis worker on the shared Redis queue (unique names, polling, orphan
//!   recovery, self-repair after Redis restarts);
//! - [`housekeeping`]: the backlog guard and the reaper of finished jobs;
//! - [`delivery`]: the rules of one delivery (expiry, idempotency, retries with backoff,
//!   failover between providers);
//! - [`breaker`]: a circuit breaker per provider;
//! - [`dead_letter`]: jobs whose payload does not decode, listed with the reason;
//! - [`provider`]: the provider trait and its `ccp`, `aliyun`, `tencent` and `log`
//!   implementations;
//! - [`markers`]: the "sent" markers and the attempt counters in the verify-codes Redis;
//! - [`startup`]: building and running it all, and the graceful stop.

pub mod breaker;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod delivery;
pub mod housekeeping;
pub mod markers;
pub mod metrics;
pub mod provider;
pub mod routes;
pub mod startup;
