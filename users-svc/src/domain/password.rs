//! Password hashing in Django's `bcrypt_sha256` format, off the async executor, with a bounded
//! queue.
//!
//! Format (Django's `BCryptSHA256PasswordHasher`): `bcrypt_sha256$` followed by the bcrypt
//! (`$2b$`) hash of the lowercase hex SHA-256 of the UTF-8 password. The SHA-256 pre-hash gives
//! bcrypt 64 ASCII bytes whatever the password, so its 72-byte limit never truncates anything
//! and a NUL byte cannot end the input early. Django's `check_password` accepts these hashes.
//!
//! Admission: at most `concurrency` hashes run at once (one per core by default: bcrypt is
//! pure CPU), each on tokio's blocking pool. A request is admitted when the wait it would face
//! for a slot is at most `max_wait` (`HASH_MAX_WAIT_MS`), estimated from the requests already
//! admitted and the recent time of one hash ([`shared::expected_wait`]); otherwise it gets
//! [`HashError::Busy`] (503) at once. Latency under overload stays bounded, and the bound follows
//! what the machine really does (a slower core, a higher cost, a neighbour's load) rather than a
//! fixed count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntGauge};
use sha2::{Digest, Sha256};
use shared::expected_wait::ExpectedWait;
use tokio::sync::Semaphore;

/// Django's algorithm prefix.
pub const PREFIX: &str = "bcrypt_sha256$";

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every slot is busy and the wait for one would be longer than allowed.
    #[error("the wait for a password hashing slot would be too long")]
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
    /// Admission by the expected wait for a slot, from the recent time of one hash (seeded
    /// with an estimate from the cost).
    admission: Arc<ExpectedWait>,
    /// `users_hash_queue_depth`: requests waiting for a slot.
    waiting: IntGauge,
    /// `users_hash_in_progress`: hashes running now.
    running: IntGauge,
    /// `users_password_hash_seconds`: time of one hash on its blocking thread.
    hash_time: Histogram,
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
    /// `concurrency` hashes at once, admitted while the expected wait is at most `max_wait`;
    /// gauges and a histogram for `/metrics`.
    pub fn new(
        cost: u32,
        concurrency: usize,
        max_wait: Duration,
        waiting: IntGauge,
        running: IntGauge,
        hash_time: Histogram,
    ) -> Self {
        Self {
            cost,
            slots: Arc::new(Semaphore::new(concurrency)),
            admission: Arc::new(ExpectedWait::new(
                concurrency,
                max_wait,
                Duration::from_micros(estimated_hash_micros(cost)),
            )),
            waiting,
            running,
            hash_time,
        }
    }

    /// Hash `password` for storage, or refuse at once when the wait for a slot would be longer
    /// than `max_wait`.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let Some(_admitted) = self.admission.admit() else {
            return Err(HashError::Busy);
        };
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
        let admission = Arc::clone(&self.admission);
        // The permit moves into the blocking task: if the client goes away meanwhile, the hash
        // still holds its slot until it really finishes, so no more than `concurrency` run.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _running = GaugeGuard::new(&running);
            let _timer = hash_time.start_timer();
            let started = Instant::now();
            let hashed = make(&password, cost);
            admission.record(started.elapsed());
            hashed
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?
    }
}

/// A first guess at one hash's time before any was measured: 65 ms at cost 10 on the
/// development machine's cores, doubling with each step of the cost.
fn estimated_hash_micros(cost: u32) -> u64 {
    65_000_u64.saturating_mul(1 << cost.saturating_sub(10).min(40))
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
        // One hash at a time, and a wait of at most one hash: one running plus one waiting fill
        // it; the third would wait two hash times and is refused without waiting.
        let hasher = Arc::new(Hasher::new(
            10,
            1,
            Duration::from_micros(estimated_hash_micros(10)),
            g("w"),
            g("r"),
            h,
        ));
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

    #[test]
    fn the_first_guess_of_a_hash_time_doubles_with_each_step_of_the_cost() {
        let g = |n: &str| IntGauge::new(n, "test").expect("gauge");
        let h =
            Histogram::with_opts(prometheus::HistogramOpts::new("h", "test")).expect("histogram");
        let hasher = Hasher::new(12, 2, Duration::from_secs(3), g("w"), g("r"), h);
        assert_eq!(hasher.admission.recent(), Duration::from_millis(260));
        assert_eq!(estimated_hash_micros(10), 65_000);
        assert_eq!(estimated_hash_micros(4), 65_000, "below 10: as 10");
    }
}
