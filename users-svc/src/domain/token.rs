//! The login token handed out at registration: an HS256 JWT shaped like
//! djangorestframework-jwt's (`jwt_payload_handler`: `user_id`, `username`, `exp`, `email`), so
//! the meiduo front end and a Django meiduo sharing the secret both accept it.
//!
//! Hand-rolled on `hmac` + `sha2` + `base64` (all already in the tree): signing one fixed header
//! and a four-field payload does not need a JWT library.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// PyJWT's header for HS256.
const HEADER: &str = r#"{"typ":"JWT","alg":"HS256"}"#;

/// Signs tokens with `JWT_SECRET`; valid for `JWT_EXPIRATION_SECS`.
#[derive(Clone)]
pub struct TokenIssuer {
    secret: Vec<u8>,
    lifetime: Duration,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// djangorestframework-jwt's payload, in its field order.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    user_id: i64,
    username: &'a str,
    exp: u64,
    email: &'a str,
}

impl TokenIssuer {
    pub fn new(secret: Vec<u8>, lifetime: Duration) -> Self {
        Self { secret, lifetime }
    }

    /// A token for a new account (its email is empty: registration does not collect one).
    pub fn issue(&self, user_id: i64, username: &str, now: SystemTime) -> String {
        let exp = now
            .checked_add(self.lifetime)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            user_id,
            username,
            exp,
            email: "",
        };
        // Serialising a struct of integers and strings cannot fail.
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts keys of any length");
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hs256_jwts_with_the_drf_jwt_payload() {
        let issuer = TokenIssuer::new(b"k".repeat(32), Duration::from_secs(86_400));
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = issuer.issue(7, "用户名abc", now);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).expect("base64url");
        assert_eq!(decode(parts[0]), HEADER.as_bytes());
        let payload: serde_json::Value = serde_json::from_slice(&decode(parts[1])).expect("json");
        assert_eq!(
            payload,
            serde_json::json!({"user_id": 7, "username": "用户名abc", "exp": 1_700_086_400_u64, "email": ""})
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&b"k".repeat(32)).expect("key");
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&decode(parts[2]))
            .expect("signature verifies");
    }
}
