//! The rules of verifications-svc, free of HTTP: drawing and issuing captchas, issuing SMS codes.

pub mod captcha;
pub mod sms;
