//! Every Redis key name, built in one place (docs/redis-keys.md). The names are the original
//! tutorial's, so a Django meiduo and these services can share one Redis database.

use crate::domain::{ImageCodeId, Mobile};

/// Seconds an image captcha lives (`img_{uuid}`).
pub const IMAGE_CODE_TTL_SECS: u64 = 300;
/// Seconds an SMS code lives (`sms_{mobile}`), and its attempt counter.
pub const SMS_CODE_TTL_SECS: u64 = 300;
/// Seconds between two sends to one mobile (`send_flag_{mobile}`).
pub const SEND_FLAG_TTL_SECS: u64 = 60;

/// `img_{uuid}`: the captcha text for one image code id.
pub fn image_code(id: &ImageCodeId) -> String {
    format!("img_{id}")
}

/// `sms_{mobile}`: the SMS code sent to a mobile.
pub fn sms_code(mobile: &Mobile) -> String {
    format!("sms_{}", mobile.as_str())
}

/// `send_flag_{mobile}`: set for 60 s after a send, the original's resend guard.
pub fn send_flag(mobile: &Mobile) -> String {
    format!("send_flag_{}", mobile.as_str())
}

/// `sms_attempts_{mobile}`: wrong guesses of the current SMS code.
pub fn sms_attempts(mobile: &Mobile) -> String {
    format!("sms_attempts_{}", mobile.as_str())
}

/// `sms_owner_{mobile}`: who asked for the current SMS code (the client's
/// `client_ip::limit_key`), written with the code and living as long; users-svc counts the
/// wrong guesses of anyone else separately so that a stranger cannot burn the owner's code.
pub fn sms_owner(mobile: &Mobile) -> String {
    format!("sms_owner_{}", mobile.as_str())
}

/// `sms_stranger_attempts_{mobile}`: wrong guesses at the current code from clients other than
/// its owner.
pub fn sms_stranger_attempts(mobile: &Mobile) -> String {
    format!("sms_stranger_attempts_{}", mobile.as_str())
}

/// `rl:{scope}:{key}`: a rate-limit counter.
pub fn rate_limit(scope: &str, key: &str) -> String {
    format!("rl:{scope}:{key}")
}

/// `sms_sent:{request_id}`: set by sms-worker once the provider accepted a job's message, so a
/// redelivered job is not sent twice.
pub fn sms_sent(request_id: &uuid::Uuid) -> String {
    format!("sms_sent:{request_id}")
}

/// `sms_send_attempts:{request_id}`: how many times sms-worker has called the provider for one
/// job, across redeliveries and worker processes (docs/sms-jobs.md §2: at most 5 attempts per job).
pub fn sms_send_attempts(request_id: &uuid::Uuid) -> String {
    format!("sms_send_attempts:{request_id}")
}

/// Rate-limit scope of the per-mobile daily SMS limit: `rl:sms_mobile:{mobile}`, counted by
/// verifications-svc when it queues a code and given back by sms-worker when no provider could
/// deliver it.
pub const SMS_MOBILE_SCOPE: &str = "sms_mobile";

/// `sms_attempt_pending:{request_id}`: the provider a job's last call went to, set before the
/// call and removed once the provider's answer showed it definitely failed. Found by a worker
/// that picks the job up again, it means that call's answer was lost (a timeout, a crash): the
/// message may have been sent, so that provider is asked before anything is sent again.
pub fn sms_attempt_pending(request_id: &uuid::Uuid) -> String {
    format!("sms_attempt_pending:{request_id}")
}

/// `sms_quota_refunded:{request_id}`: set when a job's daily-quota hit was given back, so a
/// redelivered job cannot give it back twice.
pub fn sms_quota_refunded(request_id: &uuid::Uuid) -> String {
    format!("sms_quota_refunded:{request_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_the_tutorials() {
        let m = Mobile::parse("13800138000").expect("valid");
        let id = ImageCodeId::parse("6A5F1E7C-0B4D-4E8E-9A1B-2C3D4E5F6A7B").expect("valid");
        assert_eq!(image_code(&id), "img_6a5f1e7c-0b4d-4e8e-9a1b-2c3d4e5f6a7b");
        assert_eq!(sms_code(&m), "sms_13800138000");
        assert_eq!(send_flag(&m), "send_flag_13800138000");
        assert_eq!(sms_attempts(&m), "sms_attempts_13800138000");
        assert_eq!(sms_owner(&m), "sms_owner_13800138000");
        assert_eq!(
            sms_stranger_attempts(&m),
            "sms_stranger_attempts_13800138000"
        );
        assert_eq!(rate_limit("sms_ip", "127.0.0.1"), "rl:sms_ip:127.0.0.1");
        assert_eq!(
            sms_sent(&uuid::Uuid::nil()),
            "sms_sent:00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn the_worker_keys_are_per_request_id_and_the_quota_key_is_the_rate_limits() {
        let id = uuid::Uuid::nil();
        assert_eq!(
            sms_attempt_pending(&id),
            "sms_attempt_pending:00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            sms_quota_refunded(&id),
            "sms_quota_refunded:00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            rate_limit(SMS_MOBILE_SCOPE, "13800138000"),
            "rl:sms_mobile:13800138000"
        );
    }

    #[test]
    fn the_send_attempts_key_is_per_request_id() {
        assert_eq!(
            sms_send_attempts(&uuid::Uuid::nil()),
            "sms_send_attempts:00000000-0000-0000-0000-000000000000"
        );
    }
}
