//! Password hashing in Django's `bcrypt_sha256` format, off the async executor, with a bounded
//! queue.
//!
//! Format (Django's `BCryptSHA256PasswordHasher`): `bcrypt_sha256$` followed by the bcrypt
//! (`$2b$`) hash of the lowercase hex SHA-256 of the UTF-8 password. The SHA-256 pre-hash gives
//! bcrypt 64 ASCII bytes whatever the password, so its 72-byte limit never truncates anything
//! and a NUL byte cannot end the input early. Django's `check_password` accepts these hashes.
//!
//! Admission: at most `concurrency` hashes run at once (one per core by default: bcrypt is
//! pure CPU), each on tokio's blocking pool, and at most `queue_max` requests wait for a slot.
//! A request beyond that gets [`HashError::Busy`] (503) at once, so under overload latency stays
//! bounded instead of growing with the backlog.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::{Histogram, IntGauge};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Django's algorithm prefix.
pub const PREFIX: &str = "bcrypt_sha256$";

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every slot is busy and the wait queue is full.
    #[error("the password hashing queue is full")]
    Busy,
    /// bcrypt failed or the blocking task died: a bug, not the request's fault.
    #[error("hashing failed: {0}")]
    Failed(String),
}

/// The bounded hashing service; cheap to share behind `web::Data`.
#[derive(Debug)]
pub struct Hasher {
    cost: u32,
    slots: Arc<Semaphore>,
    /// Requests admitted and not yet finished (running + waiting).
    admitted: AtomicUsize,
    capacity: usize,
    /// `users_hash_queue_depth`: requests waiting for a slot.
    waiting: IntGauge,
    /// `users_hash_in_progress`: hashes running now.
    running: IntGauge,
    /// `users_password_hash_seconds`: time of one hash on its blocking thread.
    hash_time: Histogram,
}

/// Decrements the admission count however the request ends (including a client disconnect
/// that drops the future while it waits).
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Decrements a gauge when dropped.
struct GaugeGuard(IntGauge);

impl GaugeGuard {
    fn new(g: &IntGauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Hasher {
    /// `concurrency` hashes at once, `queue_max` waiting; gauges and a histogram for `/metrics`.
    pub fn new(
        cost: u32,
        concurrency: usize,
        queue_max: usize,
        waiting: IntGauge,
        running: IntGauge,
        hash_time: Histogram,
    ) -> Self {
        Self {
            cost,
            slots: Arc::new(Semaphore::new(concurrency)),
            admitted: AtomicUsize::new(0),
            capacity: concurrency + queue_max,
            waiting,
            running,
            hash_time,
        }
    }

    /// Hash `password` for storage, or refuse at once when the queue is full.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy);
        }
        let _admission = Admission(&self.admitted);
        let permit = {
            let _waiting = GaugeGuard::new(&self.waiting);
            Arc::clone(&self.slots)
                .acquire_owned()
                .await
                .map_err(|e| HashError::Failed(e.to_string()))?
        };
        let cost = self.cost;
        let running = self.running.clone();
        let hash_time = self.hash_time.clone();
        // The permit moves into the blocking task: if the client goes away meanwhile, the hash
        // still holds its slot until it really finishes, so no more than `concurrency` run.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _running = GaugeGuard::new(&running);
            let _timer = hash_time.start_timer();
            make(&password, cost)
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?
    }
}

/// The lowercase hex SHA-256 of the password: what bcrypt actually sees.
fn prehash(password: &str) -> String {
    format!("{:x}", Sha256::digest(password.as_bytes()))
}

/// `bcrypt_sha256$$2b$<cost>$<salt+hash>` for `password` (blocking: call it off the executor).
pub fn make(password: &str, cost: u32) -> Result<String, HashError> {
    let parts = bcrypt::hash_with_result(prehash(password), cost)
        .map_err(|e| HashError::Failed(e.to_string()))?;
    Ok(format!(
        "{PREFIX}{}",
        parts.format_for_version(bcrypt::Version::TwoB)
    ))
}

/// Whether `password` matches a stored `bcrypt_sha256$...` hash, as Django's `check_password`
/// decides (blocking). Any other or malformed format is simply "no".
pub fn verify(password: &str, encoded: &str) -> bool {
    encoded
        .strip_prefix(PREFIX)
        .is_some_and(|hash| bcrypt::verify(prehash(password), hash).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_have_djangos_shape_and_verify() {
        let h = make("pass wörd 密码", 10).expect("hash");
        assert!(h.starts_with("bcrypt_sha256$$2b$10$"), "{h}");
        assert_eq!(h.len(), PREFIX.len() + 60);
        assert!(verify("pass wörd 密码", &h));
        assert!(!verify("pass wörd 密碼", &h));
        assert!(!verify("x", "pbkdf2_sha256$1$a$b"));
        assert!(!verify("x", "bcrypt_sha256$garbage"));
    }

    #[test]
    fn long_passwords_are_not_truncated_at_72_bytes() {
        let a = "a".repeat(80);
        let mut b = a.clone();
        b.push('b');
        let h = make(&a, 10).expect("hash");
        assert!(!verify(&b, &h));
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let g = |n: &str| IntGauge::new(n, "test").expect("gauge");
        let h =
            Histogram::with_opts(prometheus::HistogramOpts::new("h", "test")).expect("histogram");
        let hasher = Arc::new(Hasher::new(10, 1, 1, g("w"), g("r"), h));
        // One running plus one waiting fill it; the third is refused without waiting.
        let a = tokio::spawn({
            let h = Arc::clone(&hasher);
            async move { h.hash("password-1".into()).await }
        });
        let b = tokio::spawn({
            let h = Arc::clone(&hasher);
            async move { h.hash("password-2".into()).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let started = std::time::Instant::now();
        assert!(matches!(
            hasher.hash("password-3".into()).await,
            Err(HashError::Busy)
        ));
        assert!(started.elapsed() < std::time::Duration::from_millis(20));
        assert!(a.await.expect("task").is_ok());
        assert!(b.await.expect("task").is_ok());
        // Slots are given back: a later request is served.
        assert!(hasher.hash("password-4".into()).await.is_ok());
    }
}
