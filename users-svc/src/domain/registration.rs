//! The registration rules of `POST /users/`, in the order the original DRF serializer applies
//! them (docs/http-contract.md §6):
//!
//! 1. Field checks for every field, in the serializer's order (`username`, `password`,
//!    `password2`, `sms_code`, `mobile`, `allow`), all errors collected. "Taken" is one of them:
//!    DRF's `UniqueValidator` is a field validator, so the availability of the username and the
//!    mobile is looked up here, in one query, and reported together with the other field errors.
//!    That lookup answers what a count endpoint answers, so it spends from the same per-IP
//!    budget first ([`super::enumeration_limit`]): over it, 429 and nothing is looked up. A body
//!    whose username and mobile are both invalid looks nothing up and is not counted.
//! 2. Only when every field passed: the passwords must be equal, then the SMS code must match
//!    (see [`super::sms_verification`]).
//! 3. The password is hashed (bounded, off the executor) *before* a connection is taken, and the
//!    INSERT carries the hash: the plain text never reaches the database. The unique indexes are
//!    the real guard: the loser of a race hits them on INSERT and gets the same 400 field error
//!    as the pre-check would have given, never a 5xx.
//! 4. The SMS code is deleted (single use) and a token issued.
//!
//! Registrations of one username or mobile in this process run one after the other
//! ([`super::in_flight`]), so the later ones see the earlier one's row in step 1.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::IntCounterVec;
use serde::Serialize;
use serde_json::{Map, Value};
use shared::domain::{Mobile, Username};
use shared::drf::{FieldErrors, msg};
use shared::http::ApiError;
use shared::redis_client::RedisClient;

use super::enumeration_limit::{EnumerationLimit, LimitError};
use super::in_flight::InFlight;
use super::password::{HashError, Hasher};
use super::sms_verification::{self, CodeError};
use super::token::TokenIssuer;
use crate::db::users::{self, NewUser};
use crate::db::{Db, DbError, UniqueKey};

/// How long a registration waits for another one of the same username or mobile in flight
/// before going on by itself (the unique indexes still decide). Normally one hash time; this
/// only bounds a pathological case, so it is generous: waiting costs nothing, while giving up
/// spends a hash that the unique index will most likely throw away.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(30);

/// The original's texts (docs/http-contract.md §6).
pub mod text {
    pub const USERNAME_LENGTH: &str = "仅允许5-20个字符的用户名";
    pub const USERNAME_TAKEN: &str = "已存在一位使用该名字的用户。";
    /// The original says 用户名 here by mistake; we fix it.
    pub const PASSWORD_LENGTH: &str = "仅允许8-20个字符的密码";
    pub const MOBILE_FORMAT: &str = "手机号格式错误";
    pub const MOBILE_TAKEN: &str = "具有 手机号 的 用户 已存在。";
    pub const ALLOW: &str = "请同意用户协议";
    pub const PASSWORDS_DIFFER: &str = "两次密码不一致";
    /// DRF's `null` message (zh-hans), for a JSON `null` in a required string field.
    pub const NULL: &str = "该字段不能为 null。";
    /// DRF's `ProhibitNullCharactersValidator` message.
    pub const NUL_CHARACTER: &str = "Null characters are not allowed.";
    /// Ours, not the original's: the value has characters the table cannot store (a 4-byte
    /// character such as U+20000 in a Django table created with charset `utf8`, i.e. utf8mb3).
    pub const UNSTORABLE: &str = "包含数据库无法保存的字符";
}

/// Why a registration was refused: each variant is one DRF answer (the [`From`] impl below) and
/// one `users_registrations_total` label ([`RegisterError::reason`]).
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// 400 field errors, none of them "taken".
    #[error("invalid fields: {0:?}")]
    Invalid(FieldErrors),
    /// 400 field errors, "taken" for the username or the mobile among them.
    #[error("taken: {0:?}")]
    Taken(FieldErrors),
    /// 400 `两次密码不一致`.
    #[error("the passwords differ")]
    PasswordsDiffer,
    /// The SMS code was not accepted.
    #[error(transparent)]
    Code(#[from] CodeError),
    /// Over the per-IP enumeration limit, or the limiter is down.
    #[error(transparent)]
    Limited(#[from] LimitError),
    /// The hashing queue is full (503), or hashing failed (500).
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The database did not answer.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A bug.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl RegisterError {
    /// The label a refusal is counted under in `users_registrations_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Taken(_) => "taken",
            Self::PasswordsDiffer => "passwords_differ",
            Self::Code(e) => e.reason(),
            Self::Limited(e) => e.reason(),
            Self::Hash(HashError::Busy) => "busy",
            Self::Db(DbError::Unavailable(_) | DbError::Refused(_)) => "unavailable",
            Self::Hash(HashError::Failed(_)) | Self::Db(_) | Self::Unexpected(_) => "error",
        }
    }
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Invalid(errors) | RegisterError::Taken(errors) => {
                Self::Validation(errors)
            }
            RegisterError::PasswordsDiffer => Self::non_field(text::PASSWORDS_DIFFER),
            RegisterError::Code(e) => e.into(),
            RegisterError::Limited(e) => e.into(),
            RegisterError::Hash(e @ HashError::Busy) => Self::unavailable(e),
            RegisterError::Hash(e @ HashError::Failed(_)) => Self::Unexpected(e.into()),
            RegisterError::Db(e) => e.into(),
            RegisterError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

/// The 201 body. Never the password.
#[derive(Debug, Serialize)]
pub struct NewAccount {
    pub id: i64,
    pub username: String,
    pub mobile: String,
    pub token: String,
}

/// Everything registration needs, built once at start-up.
#[derive(Debug)]
pub struct Registrar {
    pub db: Db,
    pub redis: RedisClient,
    /// Shared by all HTTP workers: the hashing limits are per process.
    pub hasher: Arc<Hasher>,
    pub tokens: TokenIssuer,
    /// `users_registrations_total{outcome}`.
    pub outcomes: IntCounterVec,
    /// The per-IP enumeration limit of the count endpoints, spent before the "taken" lookup.
    pub limiter: EnumerationLimit,
    /// `REGISTER_WRONG_CODES_PER_IP_PER_HOUR`.
    pub wrong_codes_per_ip_per_hour: u64,
    /// Shared by all HTTP workers: one registration per username and mobile at a time.
    pub in_flight: Arc<InFlight>,
}

/// The fields after their own checks.
struct Checked {
    username: Result<Username, &'static str>,
    password: Result<String, &'static str>,
    password2: Result<String, &'static str>,
    sms_code: Result<String, &'static str>,
    mobile: Result<Mobile, &'static str>,
    allow: Result<(), &'static str>,
}

/// A valid request, ready for the cross-field checks.
struct Valid {
    username: Username,
    password: String,
    password2: String,
    sms_code: String,
    mobile: Mobile,
}

impl Registrar {
    /// Count an outcome that was decided before the rules ran (a malformed body).
    pub fn count(&self, outcome: &str) {
        self.outcomes.with_label_values(&[outcome]).inc();
    }

    /// Register an account from a parsed request body sent by `client`.
    pub async fn register(
        &self,
        client: Option<IpAddr>,
        body: &Map<String, Value>,
    ) -> Result<NewAccount, RegisterError> {
        let result = self.run(client, body).await;
        self.count(
            result
                .as_ref()
                .map_or_else(RegisterError::reason, |_| "created"),
        );
        result
    }

    async fn run(
        &self,
        client: Option<IpAddr>,
        body: &Map<String, Value>,
    ) -> Result<NewAccount, RegisterError> {
        let _claim = self
            .in_flight
            .claim(in_flight_keys(body), IN_FLIGHT_WAIT)
            .await;
        let valid = self.check_fields(client, body).await?;
        if valid.password != valid.password2 {
            return Err(RegisterError::PasswordsDiffer);
        }
        let guess = sms_verification::Guess {
            mobile: &valid.mobile,
            code: &valid.sms_code,
            client,
            wrong_codes_per_ip_per_hour: self.wrong_codes_per_ip_per_hour,
        };
        let code = sms_verification::check(&self.redis, &guess).await?;
        let account = self.create(&valid).await?;
        code.consume(&self.redis).await;
        tracing::info!(user_id = account.id, mobile = %valid.mobile, "account registered");
        Ok(account)
    }

    /// Step 1: every field's own checks, then availability (after the per-IP limit), all
    /// errors together.
    async fn check_fields(
        &self,
        client: Option<IpAddr>,
        body: &Map<String, Value>,
    ) -> Result<Valid, RegisterError> {
        let c = check_each(body);
        let (name_taken, mobile_taken, name_unstorable) =
            match (c.username.as_ref().ok(), c.mobile.as_ref().ok()) {
                (None, None) => (false, false, false),
                (name, mobile) => {
                    self.limiter.hit(client).await?;
                    self.availability(name, mobile).await?
                }
            };
        let problems = [
            (
                "username",
                problem(&c.username)
                    .or(name_unstorable.then_some(text::UNSTORABLE))
                    .or(name_taken.then_some(text::USERNAME_TAKEN)),
            ),
            ("password", problem(&c.password)),
            ("password2", problem(&c.password2)),
            ("sms_code", problem(&c.sms_code)),
            (
                "mobile",
                problem(&c.mobile).or(mobile_taken.then_some(text::MOBILE_TAKEN)),
            ),
            ("allow", problem(&c.allow)),
        ];
        // "Taken" is reported only for a value that passed its own checks.
        let taken = (name_taken && c.username.is_ok()) || (mobile_taken && c.mobile.is_ok());
        let mut errors = FieldErrors::new();
        for (field, message) in problems {
            if let Some(m) = message {
                errors.add(field, m);
            }
        }
        if !errors.is_empty() {
            return Err(if taken {
                RegisterError::Taken(errors)
            } else {
                RegisterError::Invalid(errors)
            });
        }
        match (c.username, c.password, c.password2, c.sms_code, c.mobile) {
            (Ok(username), Ok(password), Ok(password2), Ok(sms_code), Ok(mobile)) => Ok(Valid {
                username,
                password,
                password2,
                sms_code,
                mobile,
            }),
            _ => Err(anyhow::anyhow!("a field failed without an error being reported").into()),
        }
    }

    /// "Taken" for the username and the mobile in one query, plus whether the username is one
    /// the column cannot store. Only the username can be unstorable (a mobile is 11 ASCII
    /// digits): then the server rejected the comparison, the name is in no row and can never be
    /// inserted, and the mobile is looked up alone so its error is still reported with it.
    async fn availability(
        &self,
        name: Option<&Username>,
        mobile: Option<&Mobile>,
    ) -> Result<(bool, bool, bool), DbError> {
        match self
            .db
            .run(async |conn| users::taken(conn, name, mobile).await)
            .await
        {
            Ok((name_taken, mobile_taken)) => Ok((name_taken, mobile_taken, false)),
            Err(DbError::Unstorable { cause, .. }) if name.is_some() => {
                tracing::debug!(error = %cause, "a username the column cannot store");
                let mobile_taken = match mobile {
                    Some(_) => {
                        self.db
                            .run(async |conn| users::taken(conn, None, mobile).await)
                            .await?
                            .1
                    }
                    None => false,
                };
                Ok((false, mobile_taken, true))
            }
            Err(e) => Err(e),
        }
    }

    /// Steps 3 and 4: hash, insert, token.
    async fn create(&self, valid: &Valid) -> Result<NewAccount, RegisterError> {
        let hash = self.hasher.hash(valid.password.clone()).await?;
        let now = chrono::Utc::now().naive_utc();
        let row = NewUser::new(&valid.username, &valid.mobile, &hash, now);
        let inserted = self
            .db
            .run(async |conn| users::insert(conn, &row).await)
            .await;
        let id = match inserted {
            Ok(id) => id,
            Err(DbError::Duplicate(UniqueKey::Username)) => {
                return Err(RegisterError::Taken(FieldErrors::single(
                    "username",
                    text::USERNAME_TAKEN,
                )));
            }
            Err(DbError::Duplicate(UniqueKey::Mobile)) => {
                return Err(RegisterError::Taken(FieldErrors::single(
                    "mobile",
                    text::MOBILE_TAKEN,
                )));
            }
            Err(DbError::Duplicate(UniqueKey::Other)) => {
                return Err(self.which_is_taken(valid).await);
            }
            // The pre-check normally catches it; this is the server whose comparison did not
            // fail (another collation setup) but whose column still cannot hold the value.
            Err(DbError::Unstorable { column, cause }) => {
                let field = match column.as_deref() {
                    None | Some("username") => "username",
                    Some("mobile") => "mobile",
                    Some(_) => return Err(DbError::Unstorable { column, cause }.into()),
                };
                return Err(RegisterError::Invalid(FieldErrors::single(
                    field,
                    text::UNSTORABLE,
                )));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(NewAccount {
            id,
            username: valid.username.as_str().to_owned(),
            mobile: valid.mobile.as_str().to_owned(),
            token: self
                .tokens
                .issue(id, valid.username.as_str(), SystemTime::now()),
        })
    }
}

impl Registrar {
    /// A duplicate key whose index we do not know by name (a table created by Django, whose
    /// unique indexes are named after the columns): ask which value is taken, so the answer is
    /// still the field error and never a 5xx.
    async fn which_is_taken(&self, valid: &Valid) -> RegisterError {
        let taken = self
            .db
            .run(async |conn| users::taken(conn, Some(&valid.username), Some(&valid.mobile)).await)
            .await;
        let mut errors = FieldErrors::new();
        match taken {
            Ok((name, mobile)) => {
                if name {
                    errors.add("username", text::USERNAME_TAKEN);
                }
                if mobile {
                    errors.add("mobile", text::MOBILE_TAKEN);
                }
            }
            Err(e) => return e.into(),
        }
        if errors.is_empty() {
            anyhow::anyhow!("a duplicate key on neither username nor mobile").into()
        } else {
            RegisterError::Taken(errors)
        }
    }
}

/// What [`InFlight`] serialises a registration on: its username (as the column compares it,
/// case-insensitively) and its mobile, as far as the body has them.
fn in_flight_keys(body: &Map<String, Value>) -> Vec<String> {
    let username = string_field(body, "username").map(|u| format!("username:{}", u.to_lowercase()));
    let mobile = string_field(body, "mobile").map(|m| format!("mobile:{m}"));
    [username, mobile]
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// A field's own error, if it has one.
fn problem<T>(r: &Result<T, &'static str>) -> Option<&'static str> {
    r.as_ref().err().copied()
}

/// Each field's own checks, as DRF's fields run them.
fn check_each(body: &Map<String, Value>) -> Checked {
    Checked {
        username: string_field(body, "username")
            .and_then(|s| Username::parse(&s).map_err(|_| text::USERNAME_LENGTH)),
        password: string_field(body, "password").and_then(|s| {
            if (8..=20).contains(&s.chars().count()) {
                Ok(s)
            } else {
                Err(text::PASSWORD_LENGTH)
            }
        }),
        password2: string_field(body, "password2"),
        sms_code: string_field(body, "sms_code"),
        mobile: string_field(body, "mobile")
            .and_then(|s| Mobile::parse(&s).map_err(|_| text::MOBILE_FORMAT)),
        allow: string_field(body, "allow").and_then(|s| {
            if s == "true" {
                Ok(())
            } else {
                Err(text::ALLOW)
            }
        }),
    }
}

/// A required string field as DRF's `CharField` reads it: present, not null, a string (DRF
/// would also turn numbers into strings; the contract asks for `Not a valid string.` for any
/// non-string), no NUL character, surrounding whitespace trimmed, then not blank.
fn string_field(body: &Map<String, Value>, name: &str) -> Result<String, &'static str> {
    match body.get(name) {
        None => Err(msg::REQUIRED),
        Some(Value::Null) => Err(text::NULL),
        Some(Value::String(s)) if s.contains('\0') => Err(text::NUL_CHARACTER),
        Some(Value::String(s)) => match s.trim() {
            "" => Err(msg::BLANK),
            trimmed => Ok(trimmed.to_owned()),
        },
        Some(_) => Err(msg::NOT_A_STRING),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_fields_follow_drf_char_field() {
        let body: Map<String, Value> = serde_json::from_str(
            r#"{"a": "  x y  ", "b": "   ", "c": null, "d": true, "e": 5, "f": ["x"], "g": {"x": 1}, "h": "a\u0000b", "i": ""}"#,
        )
        .expect("json");
        let cases = [
            ("trimmed", "a", Ok("x y".to_owned())),
            ("whitespace only is blank", "b", Err(msg::BLANK)),
            ("null", "c", Err(text::NULL)),
            ("boolean", "d", Err(msg::NOT_A_STRING)),
            ("number", "e", Err(msg::NOT_A_STRING)),
            ("list", "f", Err(msg::NOT_A_STRING)),
            ("object", "g", Err(msg::NOT_A_STRING)),
            ("NUL inside", "h", Err(text::NUL_CHARACTER)),
            ("empty", "i", Err(msg::BLANK)),
            ("missing", "z", Err(msg::REQUIRED)),
        ];
        for (why, field, want) in cases {
            assert_eq!(string_field(&body, field), want, "{why}");
        }
    }
}
