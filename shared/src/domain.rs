//! Newtypes parsed at the boundary: once you hold a `Mobile`, it is a valid mainland mobile
//! number, and so on. They deserialize only from valid values, so a job or a row that reaches
//! our code through serde carries the same guarantee.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Why a value could not be parsed into one of the newtypes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a mainland China mobile number (1[3-9] followed by 9 digits)")]
    Mobile,
    #[error("a username is 5 to 20 letters, digits or underscores")]
    Username,
    #[error("not a UUID")]
    ImageCodeId,
    #[error("an SMS code is exactly 6 ASCII digits")]
    SmsCode,
}

static MOBILE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^1[3-9][0-9]{9}$").expect("the mobile pattern is valid"));
// `\w` is Unicode-aware here, as Python's `re` is in Django's URL pattern `\w{5,20}`.
static USERNAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\w{5,20}$").expect("the username pattern is valid"));
// Invisible format characters: Rust's `\w` takes U+200C/U+200D (Join_Control), Python's does
// not, and they make look-alike names (`alice` and `ali\u{200d}ce`).
static FORMAT_CHARACTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\p{Cf}").expect("the format-character pattern is valid"));

macro_rules! string_newtype_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

/// A mainland China mobile number, `^1[3-9]\d{9}$` (ASCII digits only).
///
/// `Display` masks the middle four digits (`138****5678`) so that a mobile can go into a log
/// line as it is; use [`Mobile::as_str`] where the full number is needed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Mobile(String);

impl Mobile {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if MOBILE.is_match(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::Mobile)
        }
    }

    /// The full number.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `138****5678`.
    pub fn masked(&self) -> String {
        format!("{}****{}", &self.0[..3], &self.0[7..])
    }
}

impl fmt::Display for Mobile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for Mobile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mobile({})", self.masked())
    }
}
string_newtype_serde!(Mobile);

/// A username: 5 to 20 Unicode word characters (letters, digits, underscore).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// NFKC first, as Django's `AbstractBaseUser.normalize_username` does before storing (so
    /// `ｆｕｌｌｗｉｄｔｈ` and `fullwidth` are one name), then the pattern on the normal form;
    /// a name with any invisible format character (`\p{Cf}`) is refused.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let normal = icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().normalize(s);
        if USERNAME.is_match(&normal) && !FORMAT_CHARACTER.is_match(&normal) {
            Ok(Self(normal.into_owned()))
        } else {
            Err(ParseError::Username)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
string_newtype_serde!(Username);

/// The id a browser picks for a captcha: a UUID in any of the usual spellings, kept in its
/// canonical lower-case hyphenated form so that `img_{id}` is the same key however it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageCodeId(uuid::Uuid);

impl ImageCodeId {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        // Length check first: `Uuid::parse_str` accepts several forms up to 45 characters
        // (braced, urn:uuid:), and anything longer is certainly not an id.
        if s.len() > 45 {
            return Err(ParseError::ImageCodeId);
        }
        uuid::Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| ParseError::ImageCodeId)
    }

    pub fn uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl fmt::Display for ImageCodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A 6-digit SMS verification code.
///
/// `Debug` hides the digits: codes are secrets and must never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsCode(String);

impl SmsCode {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::SmsCode)
        }
    }

    /// The digits, for storing in Redis and sending to the provider only.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SmsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SmsCode(******)")
    }
}
string_newtype_serde!(SmsCode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobiles_are_accepted_only_in_the_mainland_pattern() {
        for ok in ["13800138000", "19912345678", "15000000000"] {
            assert_eq!(Mobile::parse(ok).expect(ok).as_str(), ok);
        }
        let bad = [
            ("empty", ""),
            ("too short", "1380013800"),
            ("too long", "138001380000"),
            ("second digit 2", "12800138000"),
            ("second digit 0", "10800138000"),
            ("not starting with 1", "23800138000"),
            ("letter", "1380013800a"),
            ("full-width digits", "１３８００１３８０００"),
            ("arabic-indic digits", "1٣800138000"),
            ("trailing newline", "13800138000\n"),
            ("leading plus", "+8613800138000"),
            ("spaces", "138 0013 8000"),
        ];
        for (why, s) in bad {
            assert_eq!(Mobile::parse(s), Err(ParseError::Mobile), "{why}: {s:?}");
        }
    }

    #[test]
    fn mobiles_are_masked_in_display_and_debug() {
        let m = Mobile::parse("13812345678").expect("valid");
        assert_eq!(m.to_string(), "138****5678");
        assert_eq!(format!("{m:?}"), "Mobile(138****5678)");
    }

    #[test]
    fn usernames_are_five_to_twenty_word_characters() {
        for ok in [
            "alice",
            "Tom_12",
            "用户名五个字",
            "a2345678901234567890",
            "_____",
        ] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        let bad = [
            ("four characters", "abcd"),
            ("twenty-one characters", "a23456789012345678901"),
            ("space", "ali ce"),
            ("hyphen", "ali-ce"),
            ("dot", "ali.ce"),
            ("emoji", "alice😀"),
            ("NUL byte", "alice\0"),
            ("empty", ""),
            (
                "zero-width joiner (Rust's \\w takes it, Python's does not)",
                "ali\u{200d}ce",
            ),
            ("zero-width non-joiner", "ali\u{200c}ce"),
            ("soft hyphen", "ali\u{ad}ce"),
            ("left-to-right mark", "alice\u{200e}"),
            ("NFKC makes it 21 characters", "a234567890123456789\u{fb01}"),
        ];
        for (why, s) in bad {
            assert_eq!(
                Username::parse(s),
                Err(ParseError::Username),
                "{why}: {s:?}"
            );
        }
    }

    #[test]
    fn usernames_are_nfkc_normalised() {
        let cases = [
            ("full-width letters", "ａｌｉｃｅ", "alice"),
            ("ligature", "\u{fb01}nance", "finance"),
            ("decomposed accent composes", "cafe\u{301}s", "cafés"),
            ("already normal", "用户名五个字", "用户名五个字"),
        ];
        for (why, input, want) in cases {
            assert_eq!(
                Username::parse(input).map(|u| u.as_str().to_owned()),
                Ok(want.to_owned()),
                "{why}"
            );
        }
    }

    #[test]
    fn image_code_ids_are_uuids_in_canonical_form() {
        let id = ImageCodeId::parse("6A5F1E7C-0B4D-4E8E-9A1B-2C3D4E5F6A7B").expect("upper case");
        assert_eq!(id.to_string(), "6a5f1e7c-0b4d-4e8e-9a1b-2c3d4e5f6a7b");
        for bad in [
            "",
            "abc",
            "6a5f1e7c-0b4d-4e8e-9a1b-2c3d4e5f6a7",
            &"a".repeat(10_000),
        ] {
            assert_eq!(ImageCodeId::parse(bad), Err(ParseError::ImageCodeId));
        }
    }

    #[test]
    fn sms_codes_are_six_ascii_digits_and_never_printed() {
        let c = SmsCode::parse("012345").expect("valid");
        assert_eq!(c.as_str(), "012345");
        assert_eq!(format!("{c:?}"), "SmsCode(******)");
        for bad in ["", "12345", "1234567", "12345a", "１２３４５６", " 12345"] {
            assert_eq!(SmsCode::parse(bad), Err(ParseError::SmsCode), "{bad:?}");
        }
    }

    #[test]
    fn newtypes_deserialize_only_from_valid_values() {
        let m: Mobile = serde_json::from_str("\"13800138000\"").expect("valid");
        assert_eq!(serde_json::to_string(&m).expect("ser"), "\"13800138000\"");
        assert!(serde_json::from_str::<Mobile>("\"12345\"").is_err());
        assert!(serde_json::from_str::<SmsCode>("\"12a456\"").is_err());
        assert!(serde_json::from_str::<Username>("\"abc\"").is_err());
    }
}
