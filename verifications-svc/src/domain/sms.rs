//! Issuing an SMS code: the query's field checks (DRF `ImageCodeCheckSerializer` of the
//! original), the image-code and resend checks in the original's order, the abuse limits, and
//! the hand-over of one `SendSmsCode` job to sms-worker.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use apalis::prelude::{FetchById, TaskBuilder, TaskId, TaskSink};
use chrono::Utc;
use rand::RngExt;
use shared::domain::{ImageCodeId, Mobile, SmsCode};
use shared::drf::{FieldErrors, msg};
use shared::http::ApiError;
use shared::jobs::SendSmsCode;
use shared::keys;
use shared::queue::SmsStorage;
use shared::redis_client::RedisClient;

use crate::store::{
    self, BudgetWindow, Captcha, Claim, ClaimOutcome, LimitHit, Previous, SendLimits,
};

/// `图片验证码无效`: no captcha stored under the id (never issued, expired or already used).
pub const IMAGE_CODE_INVALID: &str = "图片验证码无效";
/// `图片验证码错误`: the text does not match.
pub const IMAGE_CODE_WRONG: &str = "图片验证码错误";
/// `请求次数过于频繁`: a code was sent to this mobile within the last 60 s.
pub const TOO_FREQUENT: &str = "请求次数过于频繁";

/// Length of the captcha text field.
const TEXT_LENGTH: usize = 4;

/// The validated query of `GET /sms_codes/{mobile}/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    pub image_code_id: ImageCodeId,
    /// The captcha text as typed, whitespace-trimmed; exactly 4 characters.
    pub text: String,
}

/// Python's `str.strip()` set: Unicode White_Space plus the ASCII information separators
/// `\x1c`–`\x1f`, which Python also strips and Rust's `trim` does not.
fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// Parse the query string like DRF parses `request.query_params` through the original
/// serializer (`image_code_id = UUIDField()`, `text = CharField(min_length=4, max_length=4)`):
/// - a repeated parameter keeps its last value (Django's `QueryDict.get`); bad percent-encoding
///   decodes to U+FFFD, as Django does;
/// - `image_code_id`: missing → `该字段是必填项。`; anything that is not a UUID, the empty string
///   included (DRF's `UUIDField` has no "blank" check) → `Must be a valid UUID.`;
/// - `text`: missing → required; empty or only whitespace → `该字段不能为空。`; otherwise trimmed
///   and counted in characters (not bytes) → too long / too short.
///
/// Errors of both fields are collected before returning.
pub fn parse_query(query: &str) -> Result<SendRequest, FieldErrors> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let last = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut errors = FieldErrors::new();

    let image_code_id = match last("image_code_id") {
        None => {
            errors.add("image_code_id", msg::REQUIRED);
            None
        }
        Some(raw) => ImageCodeId::parse(raw)
            .inspect_err(|_| errors.add("image_code_id", msg::INVALID_UUID))
            .ok(),
    };

    let text = match last("text") {
        None => {
            errors.add("text", msg::REQUIRED);
            None
        }
        Some(raw) => {
            let trimmed = python_strip(raw);
            let chars = trimmed.chars().count();
            if trimmed.is_empty() {
                errors.add("text", msg::BLANK);
                None
            } else if chars > TEXT_LENGTH {
                errors.add("text", msg::max_length(TEXT_LENGTH));
                None
            } else if chars < TEXT_LENGTH {
                errors.add("text", msg::min_length(TEXT_LENGTH));
                None
            } else {
                Some(trimmed.to_owned())
            }
        }
    };

    match (image_code_id, text) {
        (Some(image_code_id), Some(text)) if errors.is_empty() => Ok(SendRequest {
            image_code_id,
            text,
        }),
        _ => Err(errors),
    }
}

/// Why a send was refused or failed. Each maps to one HTTP answer and one metrics label.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no image code stored under this id")]
    ImageCodeInvalid,
    #[error("the image code text does not match")]
    ImageCodeWrong,
    #[error("the client is past its wrong-captcha limit")]
    CaptchaLimited { retry_after: u64 },
    #[error("a code was sent to this mobile within the last 60 s")]
    TooFrequent,
    #[error("over the {hit:?} send limit")]
    Limited { hit: LimitHit, retry_after: u64 },
    #[error("the global SMS budget of the {window:?} is spent")]
    BudgetSpent {
        window: BudgetWindow,
        retry_after: u64,
    },
    #[error("the verify-codes Redis or the queue is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl SendError {
    /// The `reason` label of `sms_sends_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ImageCodeInvalid => "image_code_invalid",
            Self::ImageCodeWrong => "image_code_wrong",
            Self::CaptchaLimited { .. } => "captcha_limit",
            Self::TooFrequent => "too_frequent",
            Self::Limited { hit, .. } => match hit {
                LimitHit::Mobile => "mobile_limit",
                LimitHit::Ip => "ip_limit",
                LimitHit::Prefix => "prefix_limit",
                LimitHit::Subnet => "subnet_limit",
            },
            Self::BudgetSpent { .. } => "budget_spent",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

impl From<SendError> for ApiError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::ImageCodeInvalid => Self::non_field(IMAGE_CODE_INVALID),
            SendError::ImageCodeWrong => Self::non_field(IMAGE_CODE_WRONG),
            SendError::TooFrequent => Self::non_field(TOO_FREQUENT),
            SendError::CaptchaLimited { retry_after } | SendError::Limited { retry_after, .. } => {
                Self::Throttled { retry_after }
            }
            SendError::BudgetSpent { retry_after, .. } => Self::UnavailableFor { retry_after },
            SendError::Unavailable(e) => Self::Unavailable(e),
        }
    }
}

/// A code issued and queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The global budget counters after this send, in `BudgetWindow::ALL` order.
    pub budget_used: [u64; 3],
}

/// What issuing SMS codes needs: the verify-codes Redis, the queue, the limits, the template.
#[derive(Clone)]
pub struct SmsCodes {
    pub redis: RedisClient,
    pub queue: SmsStorage,
    pub limits: SendLimits,
    pub template_id: String,
}

impl std::fmt::Debug for SmsCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsCodes")
            .field("limits", &self.limits)
            .field("template_id", &self.template_id)
            .finish_non_exhaustive()
    }
}

/// The apalis task id of the job of `request_id`: chosen by us, so that a push whose reply was
/// lost can be checked with one `fetch_by_id` instead of a scan of the queue.
pub fn job_task_id(request_id: uuid::Uuid) -> TaskId {
    TaskId::from_string(request_id.to_string())
}

/// A new 6-digit code from the thread's CSPRNG.
pub fn random_code() -> SmsCode {
    let n: u32 = rand::rng().random_range(0..1_000_000);
    SmsCode::parse(&format!("{n:06}")).expect("six zero-padded digits are a valid SMS code")
}

impl SmsCodes {
    /// Check the captcha and the resend guard, claim the send within the abuse limits and the
    /// budget, store a fresh code and queue exactly one job for it. See `crate::store` for the
    /// round trips.
    pub async fn send(
        &self,
        mobile: &Mobile,
        request: &SendRequest,
        ip: Option<IpAddr>,
    ) -> Result<Sent, SendError> {
        let code = random_code();
        let claim = Claim {
            mobile,
            ip,
            captcha: Captcha {
                id: &request.image_code_id,
                answer: &request.text,
            },
            code: &code,
            request_id: uuid::Uuid::new_v4(),
        };
        let claimed_at = Instant::now();
        let (previous, budget_used) = self.claim(&claim, claimed_at).await?;
        self.enqueue(&claim, previous.as_ref(), claimed_at).await?;
        tracing::info!(mobile = %mobile, sms_request_id = %claim.request_id, "SMS code issued and queued");
        Ok(Sent { budget_used })
    }

    /// Round trip 1: the captcha, the flag, the limits, the budget and the code, atomically.
    async fn claim(
        &self,
        claim: &Claim<'_>,
        claimed_at: Instant,
    ) -> Result<(Option<Previous>, [u64; 3]), SendError> {
        match store::claim_send(&self.redis, claim, self.limits).await {
            Ok(ClaimOutcome::Claimed {
                previous,
                budget_used,
            }) => Ok((previous, budget_used)),
            Ok(ClaimOutcome::CaptchaLimited { retry_after }) => {
                Err(SendError::CaptchaLimited { retry_after })
            }
            Ok(ClaimOutcome::NoCaptcha) => Err(SendError::ImageCodeInvalid),
            Ok(ClaimOutcome::WrongAnswer { .. }) => Err(SendError::ImageCodeWrong),
            Ok(ClaimOutcome::FlagTaken) => Err(SendError::TooFrequent),
            Ok(ClaimOutcome::Limited { hit, retry_after }) => {
                Err(SendError::Limited { hit, retry_after })
            }
            Ok(ClaimOutcome::BudgetSpent {
                window,
                retry_after,
            }) => {
                page_budget_spent(window, retry_after);
                Err(SendError::BudgetSpent {
                    window,
                    retry_after,
                })
            }
            Err(e) => {
                // Once sent, the script may or may not have run (a timeout, a dropped
                // connection): give back what may be ours, but refund no counter hit that may
                // never have been counted.
                if !shared::redis_client::never_sent(&e) {
                    self.release(claim, false, None, claimed_at).await;
                }
                Err(SendError::Unavailable(e.into()))
            }
        }
    }

    /// Round trip 2: push the job; on a failure that did not store it, undo the claim.
    async fn enqueue(
        &self,
        claim: &Claim<'_>,
        previous: Option<&Previous>,
        claimed_at: Instant,
    ) -> Result<(), SendError> {
        // The job's task id is its request id: apalis stores it with HSETNX under that id, so
        // after a push error one exact lookup tells whether Redis stored the job anyway.
        let task_id = job_task_id(claim.request_id);
        let mut queue = self.queue.clone();
        let task = TaskBuilder::new(self.job(claim))
            .task_id(task_id.clone())
            .build();
        let Err(e) = queue.push_task(task).await else {
            return Ok(());
        };
        // A timeout can come after Redis stored the job (the reply was lost): then the job is
        // queued and will be sent, so this is a success; giving the flag back would let a retry
        // send a second SMS within 60 s.
        match queue.fetch_by_id(&task_id).await {
            Ok(Some(_)) => {
                tracing::warn!(mobile = %claim.mobile, sms_request_id = %claim.request_id, error = %e,
                    "the queue push reported an error but the job is queued");
                return Ok(());
            }
            Ok(None) => {}
            Err(check) => {
                tracing::warn!(mobile = %claim.mobile, error = %check,
                    "cannot tell whether the failed push was stored");
            }
        }
        // Put back the code this one replaced: the user may have it and it is still valid.
        self.release(claim, true, previous, claimed_at).await;
        Err(SendError::Unavailable(anyhow::anyhow!(
            "cannot queue the SMS job: {e}"
        )))
    }

    /// The job that sends `claim`'s code.
    fn job(&self, claim: &Claim<'_>) -> SendSmsCode {
        SendSmsCode {
            mobile: claim.mobile.clone(),
            code: claim.code.clone(),
            ttl_minutes: u32::try_from(keys::SMS_CODE_TTL_SECS / 60)
                .expect("the code TTL is a few minutes"),
            template_id: self.template_id.clone(),
            request_id: claim.request_id,
            created_at: Utc::now(),
        }
    }

    async fn release(
        &self,
        claim: &Claim<'_>,
        refund: bool,
        previous: Option<&Previous>,
        claimed_at: Instant,
    ) {
        let elapsed = claimed_at.elapsed();
        if let Err(e) = store::release_send(&self.redis, claim, refund, previous, elapsed).await {
            // The flag still expires by itself after 60 s.
            tracing::warn!(mobile = %claim.mobile, error = %e, "could not release the send flag");
        }
    }
}

/// Unix second of the last budget page, so a flood of refusals logs one line per
/// [`PAGE_EVERY_SECS`] per process instead of one per request (the metric counts them all).
static LAST_PAGE: AtomicU64 = AtomicU64::new(0);
const PAGE_EVERY_SECS: u64 = 10;

/// The log line an operator pages on: every SMS send is refused until the window ends.
fn page_budget_spent(window: BudgetWindow, retry_after: u64) {
    let now = u64::try_from(Utc::now().timestamp()).unwrap_or_default();
    let last = LAST_PAGE.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= PAGE_EVERY_SECS
        && LAST_PAGE
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::error!(
            alert = "sms_budget_spent",
            window = window.name(),
            retry_after,
            "SMS budget spent: every SMS code request is refused with 503 until the window \
             ends (raise SMS_BUDGET_PER_* only if this traffic is real)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6a5f1e7c-0b4d-4e8e-9a1b-2c3d4e5f6a7b";

    fn errors(query: &str) -> String {
        serde_json::to_string(&parse_query(query).expect_err(query)).expect("ser")
    }

    #[test]
    fn valid_queries_parse_with_the_last_value_and_trimmed_text() {
        let ok = parse_query(&format!("image_code_id={ID}&text=AbC3")).expect("valid");
        assert_eq!(ok.image_code_id.to_string(), ID);
        assert_eq!(ok.text, "AbC3");
        let ok = parse_query(&format!(
            "text=zzzzzz&image_code_id=nope&image_code_id={}&text=%20ab%E4%B8%AD4+",
            ID.to_uppercase()
        ))
        .expect("last values win, text trimmed");
        assert_eq!(ok.image_code_id.to_string(), ID);
        assert_eq!(ok.text, "ab中4");
    }

    #[test]
    fn field_errors_are_collected_for_both_fields_with_drf_texts() {
        let cases = [
            (
                "nothing",
                String::new(),
                r#"{"image_code_id":["该字段是必填项。"],"text":["该字段是必填项。"]}"#,
            ),
            (
                "both blank",
                "image_code_id=&text=".to_owned(),
                r#"{"image_code_id":["Must be a valid UUID."],"text":["该字段不能为空。"]}"#,
            ),
            (
                "text only whitespace, Python's separators included",
                format!("image_code_id={ID}&text=%20%09%E3%80%80%1F"),
                r#"{"text":["该字段不能为空。"]}"#,
            ),
            (
                "too long, counted in characters",
                format!("image_code_id={ID}&text=%E4%B8%AD%E4%B8%AD%E4%B8%AD%E4%B8%AD%E4%B8%AD"),
                r#"{"text":["请确保这个字段不能超过 4 个字符。"]}"#,
            ),
            (
                "four characters of three bytes each are fine, three are too short",
                format!("image_code_id={ID}&text=%E4%B8%AD%E4%B8%AD%E4%B8%AD"),
                r#"{"text":["请确保这个字段至少包含 4 个字符。"]}"#,
            ),
            (
                "bad uuid and short text",
                "image_code_id=123&text=ab".to_owned(),
                r#"{"image_code_id":["Must be a valid UUID."],"text":["请确保这个字段至少包含 4 个字符。"]}"#,
            ),
            (
                "huge uuid, missing text",
                format!("image_code_id={}", "a".repeat(5000)),
                r#"{"image_code_id":["Must be a valid UUID."],"text":["该字段是必填项。"]}"#,
            ),
            (
                "invalid percent-encoding decodes lossily",
                format!("image_code_id={ID}&text=%FF%FE"),
                r#"{"text":["请确保这个字段至少包含 4 个字符。"]}"#,
            ),
            (
                "NUL in the id",
                format!("image_code_id={ID}%00&text=abcd"),
                r#"{"image_code_id":["Must be a valid UUID."]}"#,
            ),
        ];
        for (why, query, want) in cases {
            assert_eq!(errors(&query), want, "{why}");
        }
        assert!(
            parse_query(&format!(
                "image_code_id={ID}&text=%E4%B8%AD%E4%B8%AD%E4%B8%AD%E4%B8%AD"
            ))
            .is_ok()
        );
    }

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> = (0..200)
            .map(|_| random_code().as_str().to_owned())
            .collect();
        assert!(codes.len() > 190, "{}", codes.len());
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()))
        );
    }
}
