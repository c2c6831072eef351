//! Issuing a captcha: the client's issuance limit, a render slot of the per-process
//! [`RenderLimit`], the drawing on tokio's blocking pool, and (in the same round trip as the
//! limit) the text stored in Redis as `img_{id}` meanwhile.
//!
//! One round trip per captcha: counting the client and storing the text are one script, run
//! while the picture is drawn. A client the limit refuses therefore costs one render the first
//! time; this process then remembers the refusal until the client's window ends
//! ([`Refusals`]), so its further requests cost neither a render nor a round trip. Another
//! replica learns the same from its own first refusal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shared::domain::ImageCodeId;
use shared::redis_client::RedisClient;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{random_text, render_png};
use crate::store::{self, Issued};

/// Why a captcha could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("past the captcha issuance limit")]
    Limited { retry_after: u64 },
    #[error("cannot store the image code")]
    Unavailable(#[source] redis::RedisError),
    #[error("cannot draw the captcha")]
    Render(#[source] anyhow::Error),
    #[error("all {0} captcha render slots stayed busy for the whole wait")]
    Busy(usize),
}

impl From<IssueError> for shared::http::ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Limited { retry_after } => Self::Throttled { retry_after },
            // All render slots busy: the same 503 + Retry-After as a dependency outage.
            e @ (IssueError::Unavailable(_) | IssueError::Busy(_)) => Self::unavailable(e),
            IssueError::Render(e) => Self::Unexpected(e),
        }
    }
}

/// The per-process bound on concurrent captcha renders (`CAPTCHA_MAX_CONCURRENT_RENDERS`).
///
/// Each render takes a blocking-pool thread, and tokio lets that pool grow to 512 threads: an
/// unbounded flood would hold hundreds of threads (and their stacks) and break the memory goal
/// of docs/performance.md §1 while rendering no faster, the CPU being the limit. A few renders per core keep
/// the cores busy; a request that cannot get a slot within `wait` is refused (503), instead of
/// queueing without bound.
#[derive(Debug, Clone)]
pub struct RenderLimit {
    permits: Arc<Semaphore>,
    max: usize,
    wait: Duration,
}

impl RenderLimit {
    /// At most `max` renders at a time in this process; wait up to `wait` for a slot.
    pub fn new(max: usize, wait: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            wait,
        }
    }

    /// A render slot, released when the permit is dropped.
    async fn acquire(&self) -> Result<OwnedSemaphorePermit, IssueError> {
        match tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out, or closed (never: nothing closes it).
            _ => Err(IssueError::Busy(self.max)),
        }
    }
}

/// How many refused clients one process remembers at most. An entry exists only for a client
/// that went past its limit, and lives until its window ends (≤ 60 s); a flood from more
/// distinct clients than this within a minute just falls back to asking Redis (and drawing).
const MAX_REFUSALS: usize = 10_000;

/// The clients this process saw refused by the issuance limit, each until its window in Redis
/// ends. A fixed window's counter only grows until it expires, so within that time Redis
/// would refuse the client again: answering from here changes nothing but the cost.
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<Mutex<HashMap<String, Instant>>>);

impl Refusals {
    /// Seconds until `client`'s window ends (at least 1), if it is known to be refused.
    fn retry_after(&self, client: &str, now: Instant) -> Option<u64> {
        let mut refused = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let ends = *refused.get(client)?;
        if ends <= now {
            refused.remove(client);
            return None;
        }
        let left = ends - now;
        Some(left.as_secs() + u64::from(left.subsec_nanos() > 0))
    }

    fn remember(&self, client: &str, ends: Instant, now: Instant) {
        let mut refused = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if refused.len() >= MAX_REFUSALS {
            refused.retain(|_, ends| *ends > now);
        }
        if refused.len() < MAX_REFUSALS {
            refused.insert(client.to_owned(), ends);
        }
    }
}

/// What issuing needs besides Redis: the process's render slots and refusal memo, and the
/// limit (`CAPTCHA_ISSUE_LIMIT_PER_IP_PER_MINUTE`).
#[derive(Debug, Clone)]
pub struct Issuer {
    pub renders: RenderLimit,
    pub refusals: Refusals,
    pub limit_per_minute: u64,
}

/// Issue a captcha for `id` to `client` (its limit key): a new text stored as `img_{id}` for
/// 300 s (replacing any earlier one) and its PNG, or [`IssueError::Limited`] with nothing
/// stored. A render slot is taken first, so a request refused for want of one stores nothing
/// and counts nothing; drawing then runs on the blocking pool while the script counts and
/// stores.
pub async fn issue(
    redis: &RedisClient,
    issuer: &Issuer,
    id: &ImageCodeId,
    client: &str,
) -> Result<Vec<u8>, IssueError> {
    if let Some(retry_after) = issuer.refusals.retry_after(client, Instant::now()) {
        return Err(IssueError::Limited { retry_after });
    }
    let permit = issuer.renders.acquire().await?;
    let text = random_text(&mut rand::rng());
    let to_draw = text.clone();
    let (png, stored) = tokio::join!(
        tokio::task::spawn_blocking(move || {
            // Held by the render itself: if the request is dropped meanwhile, the slot stays
            // taken until the thread is really free.
            let _permit = permit;
            render_png(&to_draw)
        }),
        store::issue_image_code(redis, id, &text, client, issuer.limit_per_minute),
    );
    if let Issued::Refused { window_left_ms } = stored.map_err(IssueError::Unavailable)? {
        let now = Instant::now();
        let left = Duration::from_millis(window_left_ms);
        issuer.refusals.remember(client, now + left, now);
        return Err(IssueError::Limited {
            retry_after: window_left_ms.div_ceil(1000),
        });
    }
    png.map_err(|e| IssueError::Render(e.into()))?
        .map_err(|e| IssueError::Render(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every render slot taken, a request waits `wait`, is refused, and stores nothing;
    /// once the slot is free the next one is served and stored.
    #[tokio::test]
    async fn a_busy_render_limit_refuses_after_the_wait_without_storing_the_key() {
        use redis::Commands;
        let db = harness::test_redis();
        let redis = store::connect(&db.url(), Duration::from_secs(2)).expect("URL");
        let issuer = Issuer {
            renders: RenderLimit::new(1, Duration::from_millis(100)),
            refusals: Refusals::default(),
            limit_per_minute: 60,
        };
        let held = issuer.renders.acquire().await.expect("the one slot");
        let id = ImageCodeId::parse("6a5f1e7c-0b4d-4e8e-9a1b-2c3d4e5f6a7b").expect("uuid");
        let started = std::time::Instant::now();
        let refused = issue(&redis, &issuer, &id, "127.0.0.1").await;
        assert!(matches!(refused, Err(IssueError::Busy(1))), "{refused:?}");
        assert!(started.elapsed() >= Duration::from_millis(100));
        let mut conn = db.client().get_connection().expect("connects");
        let stored: Option<String> = conn.get(format!("img_{id}")).expect("GET");
        assert_eq!(stored, None, "a refused request stores nothing");

        drop(held);
        let png = issue(&redis, &issuer, &id, "127.0.0.1")
            .await
            .expect("a free slot renders");
        assert!(png.starts_with(b"\x89PNG"));
        let stored: Option<String> = conn.get(format!("img_{id}")).expect("GET");
        let stored = stored.expect("stored once drawn");
        assert_eq!(stored.len(), super::super::LENGTH, "{stored}");
        assert!(
            stored.bytes().all(|c| super::super::ALPHABET.contains(&c)),
            "{stored}"
        );
        // The render released its slot when it finished.
        assert_eq!(issuer.renders.permits.available_permits(), 1);
        let counted: Option<String> = conn.get("rl:captcha_issue:127.0.0.1").expect("GET");
        assert_eq!(
            counted.as_deref(),
            Some("1"),
            "the refused request counted nothing"
        );
    }

    #[test]
    fn a_refusal_is_remembered_until_its_window_ends_rounded_up_to_seconds() {
        let refusals = Refusals::default();
        let now = Instant::now();
        refusals.remember("192.0.2.1", now + Duration::from_millis(41_200), now);
        assert_eq!(refusals.retry_after("192.0.2.1", now), Some(42));
        assert_eq!(
            refusals.retry_after("192.0.2.2", now),
            None,
            "another client"
        );
        let later = now + Duration::from_millis(41_199);
        assert_eq!(refusals.retry_after("192.0.2.1", later), Some(1));
        let ended = now + Duration::from_millis(41_200);
        assert_eq!(refusals.retry_after("192.0.2.1", ended), None);
        assert!(
            refusals.0.lock().expect("lock").is_empty(),
            "forgotten once over"
        );
    }

    #[test]
    fn the_memo_is_bounded_and_makes_room_only_from_ended_windows() {
        let refusals = Refusals::default();
        let now = Instant::now();
        for n in 0..MAX_REFUSALS {
            // Half of them end after one second.
            let secs = if n % 2 == 0 { 1 } else { 60 };
            refusals.remember(&format!("c{n}"), now + Duration::from_secs(secs), now);
        }
        refusals.remember("full", now + Duration::from_secs(60), now);
        assert_eq!(
            refusals.retry_after("full", now),
            None,
            "no room: not remembered"
        );
        let later = now + Duration::from_secs(2);
        refusals.remember("room", later + Duration::from_secs(60), later);
        assert_eq!(refusals.retry_after("room", later), Some(60));
        assert_eq!(
            refusals.0.lock().expect("lock").len(),
            MAX_REFUSALS / 2 + 1,
            "the ended half was dropped"
        );
    }
}
