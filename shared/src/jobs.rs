//! The job payloads that cross the queue. One type serves producer (verifications-svc) and
//! consumer (sms-worker), so they cannot drift apart.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Mobile, SmsCode};

/// Default apalis queue (namespace) of [`SendSmsCode`] jobs; configurable with `SMS_QUEUE`.
pub const DEFAULT_SMS_QUEUE: &str = "meiduo:sms_codes";

/// Send one verification code to one mobile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendSmsCode {
    pub mobile: Mobile,
    pub code: SmsCode,
    /// How long the code is valid, in minutes; also the second template variable.
    pub ttl_minutes: u32,
    /// The provider's template id (CCP: `1` is the test template).
    pub template_id: String,
    /// Unique per send: the provider's de-duplication id and the key of the "sent" marker.
    pub request_id: uuid::Uuid,
    pub created_at: DateTime<Utc>,
}

impl SendSmsCode {
    /// When the code stops being accepted; sending after this is pointless.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.created_at + Duration::minutes(i64::from(self.ttl_minutes))
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> SendSmsCode {
        SendSmsCode {
            mobile: Mobile::parse("13800138000").expect("valid"),
            code: SmsCode::parse("123456").expect("valid"),
            ttl_minutes: 5,
            template_id: "1".into(),
            request_id: uuid::Uuid::nil(),
            created_at: DateTime::from_timestamp(1_700_000_000, 0).expect("valid"),
        }
    }

    #[test]
    fn round_trips_as_json_with_the_documented_field_names() {
        let j = job();
        let text = serde_json::to_string(&j).expect("ser");
        assert_eq!(
            text,
            r#"{"mobile":"13800138000","code":"123456","ttl_minutes":5,"template_id":"1","request_id":"00000000-0000-0000-0000-000000000000","created_at":"2023-11-14T22:13:20Z"}"#
        );
        assert_eq!(serde_json::from_str::<SendSmsCode>(&text).expect("de"), j);
        let bad = text.replace("13800138000", "12345");
        assert!(
            serde_json::from_str::<SendSmsCode>(&bad).is_err(),
            "an invalid mobile cannot be deserialized"
        );
    }

    #[test]
    fn expires_ttl_minutes_after_creation() {
        let j = job();
        assert!(!j.is_expired(j.created_at + Duration::seconds(299)));
        assert!(j.is_expired(j.created_at + Duration::seconds(300)));
    }
}
