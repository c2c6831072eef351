//! Issuing a captcha: the client's issuance limit, admission by the expected wait for this
//! worker's drawing ([`ExpectedWait`]), one round trip that counts the client and stores the
//! text as `img_{id}`, then the drawing on the HTTP worker's own thread.
//!
//! Why on the worker's thread: a render takes well under 0.1 ms of CPU (`captcha_timing`), and
//! handing each to tokio's blocking pool cost a good part of that again in wake-ups and
//! context switches (a pool thread woken, then the worker woken back; measured in
//! docs/performance.md §3). A worker therefore draws one picture at a time, and a flood queues
//! in front of its drawing: a request is admitted only while the renders admitted before it on
//! this worker would take at most `CAPTCHA_RENDER_WAIT_MS`, else it gets 503 at once and stores
//! nothing. The round trip comes first: while a request waits for Redis its worker reads the
//! requests behind it, and they are counted while its render is still to come (a render on a
//! request's first poll is over before the next request is even read, so nothing would ever
//! seem to wait); and a client the limit refuses costs no render.
//!
//! A refused client: this process remembers the refusal until the client's window ends
//! ([`Refusals`]), so its further requests cost neither a render nor a round trip. Another
//! replica learns the same from its own first refusal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shared::domain::ImageCodeId;
use shared::expected_wait::ExpectedWait;
use shared::redis_client::RedisClient;

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
    #[error("the captcha renders queued on this worker would take longer than the render wait")]
    Busy,
}

impl From<IssueError> for shared::http::ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Limited { retry_after } => Self::Throttled { retry_after },
            // Too many renders queued: the same 503 + Retry-After as a dependency outage.
            e @ (IssueError::Unavailable(_) | IssueError::Busy) => Self::unavailable(e),
            IssueError::Render(e) => Self::Unexpected(e),
        }
    }
}

/// A first guess at one render's time (draw + encode, release, with the worker's other work
/// around it) until one is measured.
const FIRST_RENDER_GUESS: Duration = Duration::from_micros(100);

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

/// What issuing needs besides Redis: this worker's render admission, the process's refusal
/// memo, and the limit (`CAPTCHA_ISSUE_LIMIT_PER_IP_PER_MINUTE`). One per HTTP worker
/// ([`Issuer::for_worker`]).
#[derive(Debug, Clone)]
pub struct Issuer {
    renders: Arc<ExpectedWait>,
    pub refusals: Refusals,
    pub limit_per_minute: u64,
}

impl Issuer {
    /// The issuer of one HTTP worker: renders admitted while the wait for this worker's queued
    /// renders is at most `render_wait`; `refusals` shared with the other workers.
    pub fn for_worker(render_wait: Duration, refusals: Refusals, limit_per_minute: u64) -> Self {
        Self {
            renders: Arc::new(ExpectedWait::new(1, render_wait, FIRST_RENDER_GUESS)),
            refusals,
            limit_per_minute,
        }
    }
}

/// Issue a captcha for `id` to `client` (its limit key): a new text stored as `img_{id}` for
/// 300 s (replacing any earlier one) and its PNG, or [`IssueError::Limited`] with nothing
/// stored. Admission comes first, so a request refused for the render wait stores nothing and
/// counts nothing; the picture is drawn once Redis has counted and stored.
pub async fn issue(
    redis: &RedisClient,
    issuer: &Issuer,
    id: &ImageCodeId,
    client: &str,
) -> Result<Vec<u8>, IssueError> {
    if let Some(retry_after) = issuer.refusals.retry_after(client, Instant::now()) {
        return Err(IssueError::Limited { retry_after });
    }
    let Some(_admitted) = issuer.renders.admit() else {
        return Err(IssueError::Busy);
    };
    let text = random_text(&mut rand::rng());
    let stored = store::issue_image_code(redis, id, &text, client, issuer.limit_per_minute)
        .await
        .map_err(IssueError::Unavailable)?;
    if let Issued::Refused { window_left_ms } = stored {
        let now = Instant::now();
        let left = Duration::from_millis(window_left_ms);
        issuer.refusals.remember(client, now + left, now);
        return Err(IssueError::Limited {
            retry_after: window_left_ms.div_ceil(1000),
        });
    }
    let started = Instant::now();
    let png = render_png(&text);
    issuer.renders.record(started.elapsed());
    png.map_err(|e| IssueError::Render(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With renders queued ahead on this worker for longer than the wait, a request is refused
    /// at once and stores and counts nothing; once they are done the next one is served,
    /// stored and counted.
    #[tokio::test]
    async fn a_request_behind_too_long_a_render_queue_is_refused_at_once_storing_nothing() {
        use redis::Commands;
        let db = harness::test_redis();
        let redis = store::connect(&db.url(), Duration::from_secs(2)).expect("URL");
        // The wait allows 100 renders of the first guess ahead: 101 admitted fill it.
        let issuer = Issuer::for_worker(FIRST_RENDER_GUESS * 100, Refusals::default(), 60);
        let ahead: Vec<_> = (0..101)
            .map(|_| issuer.renders.admit().expect("within the wait"))
            .collect();
        let id = ImageCodeId::parse("6a5f1e7c-0b4d-4e8e-9a1b-2c3d4e5f6a7b").expect("uuid");
        let refused = issue(&redis, &issuer, &id, "127.0.0.1").await;
        assert!(matches!(refused, Err(IssueError::Busy)), "{refused:?}");
        let mut conn = db.client().get_connection().expect("connects");
        let stored: Option<String> = conn.get(format!("img_{id}")).expect("GET");
        assert_eq!(stored, None, "a refused request stores nothing");
        let counted: Option<String> = conn.get("rl:captcha_issue:127.0.0.1").expect("GET");
        assert_eq!(counted, None, "and counts nothing");

        drop(ahead);
        let png = issue(&redis, &issuer, &id, "127.0.0.1")
            .await
            .expect("nothing ahead: served");
        assert!(png.starts_with(b"\x89PNG"));
        let stored: Option<String> = conn.get(format!("img_{id}")).expect("GET");
        let stored = stored.expect("stored once drawn");
        assert_eq!(stored.len(), super::super::LENGTH, "{stored}");
        assert!(
            stored.bytes().all(|c| super::super::ALPHABET.contains(&c)),
            "{stored}"
        );
        let counted: Option<String> = conn.get("rl:captcha_issue:127.0.0.1").expect("GET");
        assert_eq!(counted.as_deref(), Some("1"), "counted once");
        assert!(
            issuer.renders.admit().is_some(),
            "every admission was given back"
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
