//! API tests of verifications-svc against a real Redis.

mod health;
mod helpers;
