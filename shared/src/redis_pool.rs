//! Kept only for the name: the pool is gone (every crate uses [`crate::redis_client`]); callers
//! that redact URLs in log lines still find [`redacted`] here.

pub use crate::redis_client::redacted;
