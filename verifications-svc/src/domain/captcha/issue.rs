//! Issuing a captcha: a render slot of the per-process [`RenderLimit`], the drawing on tokio's
//! blocking pool, and the text stored in Redis as `img_{id}` meanwhile.

use std::sync::Arc;
use std::time::Duration;

use shared::domain::ImageCodeId;
use shared::redis_client::RedisClient;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{random_text, render_png};
use crate::store;

/// Why a captcha could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
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

/// Issue a captcha for `id`: a new text stored as `img_{id}` for 300 s (replacing any earlier
/// one) and its PNG. A render slot of `limit` is taken first, so a refused request stores
/// nothing; drawing then runs on the blocking pool while the text is being stored.
pub async fn issue(
    redis: &RedisClient,
    limit: &RenderLimit,
    id: &ImageCodeId,
) -> Result<Vec<u8>, IssueError> {
    let permit = limit.acquire().await?;
    let text = random_text(&mut rand::rng());
    let to_draw = text.clone();
    let (png, stored) = tokio::join!(
        tokio::task::spawn_blocking(move || {
            // Held by the render itself: if the request is dropped meanwhile, the slot stays
            // taken until the thread is really free.
            let _permit = permit;
            render_png(&to_draw)
        }),
        store::store_image_code(redis, id, &text),
    );
    stored.map_err(IssueError::Unavailable)?;
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
        let limit = RenderLimit::new(1, Duration::from_millis(100));
        let held = limit.acquire().await.expect("the one slot");
        let id = ImageCodeId::parse("6a5f1e7c-0b4d-4e8e-9a1b-2c3d4e5f6a7b").expect("uuid");
        let started = std::time::Instant::now();
        let refused = issue(&redis, &limit, &id).await;
        assert!(matches!(refused, Err(IssueError::Busy(1))), "{refused:?}");
        assert!(started.elapsed() >= Duration::from_millis(100));
        let mut conn = db.client().get_connection().expect("connects");
        let stored: Option<String> = conn.get(format!("img_{id}")).expect("GET");
        assert_eq!(stored, None, "a refused request stores nothing");

        drop(held);
        let png = issue(&redis, &limit, &id)
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
        assert_eq!(limit.permits.available_permits(), 1);
    }
}
