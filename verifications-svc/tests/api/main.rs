//! API tests of verifications-svc against a real Redis and the real apalis storage.

mod abuse;
mod health;
mod helpers;
mod image_codes;
mod sms_codes;
