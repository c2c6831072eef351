//! The development provider: it writes one line with the masked mobile and sends nothing.
//! The code itself is never logged (read it from Redis, `sms_{mobile}`, when testing by hand).

use shared::jobs::SendSmsCode;

use super::{Attempt, Resolution, SmsProvider};

/// `SMS_PROVIDER=log`.
#[derive(Debug, Clone, Copy)]
pub struct Log;

impl SmsProvider for Log {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn send(&self, job: &SendSmsCode) -> Attempt {
        tracing::info!(
            mobile = %job.mobile,
            sms_request_id = %job.request_id,
            template_id = %job.template_id,
            ttl_minutes = job.ttl_minutes,
            "SMS_PROVIDER=log: message not sent"
        );
        Attempt::Sent
    }

    /// Nothing is ever sent: nothing to tell apart.
    async fn resolve(&self, _job: &SendSmsCode) -> Resolution {
        Resolution::Resend
    }
}
