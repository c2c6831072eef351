//! The rules of users-svc, free of HTTP: availability counts ([`availability`]), the per-IP
//! enumeration limit they share with registration ([`enumeration_limit`]), registration
//! ([`registration`]), password hashing in
//! Django's format ([`password`]), the SMS code check ([`sms_verification`]) and the login token
//! ([`token`]).
//!
//! Each returns its own small error enum (`CountError`, `LimitError`, `RegisterError`,
//! `CodeError`, `HashError`), whose `reason()` is the label metrics count it under; the one
//! place each becomes an HTTP answer is its `From<…> for ApiError`, beside it.

pub mod availability;
pub mod enumeration_limit;
pub mod in_flight;
pub mod password;
pub mod registration;
pub mod sms_verification;
pub mod token;
