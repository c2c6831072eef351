//! verifications-svc owns the proofs a visitor gives before registering: image captchas
//! (`GET /image_codes/{uuid}/`) and SMS codes (`GET /sms_codes/{mobile}/`), kept in the
//! "verify codes" Redis database under the original tutorial's key names. It does not send SMS
//! itself: it pushes a `SendSmsCode` job that sms-worker delivers.

pub mod config;
pub mod domain;
pub mod metrics;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;
