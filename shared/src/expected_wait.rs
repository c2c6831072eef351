//! Admission by expected wait, for a step that runs `concurrency` at a time and takes a
//! measurable while each (users-svc's password hash, verifications-svc's captcha drawing): a
//! request is admitted when the wait it would face, estimated from the requests already
//! admitted and the recent time of one step, is at most `max_wait`; otherwise it is refused at
//! once (a 503 for the caller) instead of queueing. Latency under overload stays bounded, and
//! the bound follows what the machine really does (a slower core, a neighbour's load) rather
//! than a fixed count.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The count of admitted requests and the recent step time of one bounded step.
#[derive(Debug)]
pub struct ExpectedWait {
    concurrency: usize,
    max_wait: Duration,
    /// Requests admitted and not yet finished (running + waiting).
    admitted: AtomicUsize,
    /// The recent time of one step in microseconds: a moving average of the measured ones,
    /// seeded with the caller's first guess.
    recent_micros: AtomicU64,
}

/// One admitted request; dropping it (however the request ends, a client disconnect that drops
/// the future included) gives its place back.
#[derive(Debug)]
pub struct Admitted<'a>(&'a ExpectedWait);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ExpectedWait {
    /// `concurrency` steps at a time (at least 1), each taking about `first_guess` until one
    /// is measured; admitted while the expected wait is at most `max_wait`.
    pub fn new(concurrency: usize, max_wait: Duration, first_guess: Duration) -> Self {
        Self {
            concurrency: concurrency.max(1),
            max_wait,
            admitted: AtomicUsize::new(0),
            recent_micros: AtomicU64::new(micros(first_guess)),
        }
    }

    /// The wait a request admitted now would face when `ahead` requests are admitted already:
    /// none while a slot is free, else one step time for every round of `concurrency` steps
    /// that must finish first.
    pub fn expected_wait(&self, ahead: usize) -> Duration {
        let rounds = match ahead.checked_sub(self.concurrency) {
            None => 0,
            Some(queued) => queued / self.concurrency + 1,
        };
        self.recent()
            .saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX))
    }

    /// Admit a request, or `None` when its expected wait would be longer than `max_wait`.
    pub fn admit(&self) -> Option<Admitted<'_>> {
        let ahead = self.admitted.fetch_add(1, Ordering::AcqRel);
        let admitted = Admitted(self);
        (self.expected_wait(ahead) <= self.max_wait).then_some(admitted)
    }

    /// Fold one measured step time into the moving average (weight 1/4: a few steps follow a
    /// change of load, one outlier does not swing it).
    pub fn record(&self, took: Duration) {
        // A lost update between two steps finishing at once only drops one sample.
        let old = self.recent_micros.load(Ordering::Relaxed);
        self.recent_micros
            .store(old - old / 4 + micros(took) / 4, Ordering::Relaxed);
    }

    /// The recent time of one step.
    pub fn recent(&self) -> Duration {
        Duration::from_micros(self.recent_micros.load(Ordering::Relaxed))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_wait_is_one_step_time_per_round_of_slots_ahead() {
        let step = Duration::from_millis(260);
        let wait = ExpectedWait::new(2, Duration::from_secs(3), step);
        let cases = [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (19, 9), (39, 19)];
        for (ahead, rounds) in cases {
            assert_eq!(wait.expected_wait(ahead), step * rounds, "{ahead} ahead");
        }
        wait.record(Duration::from_millis(660));
        assert_eq!(wait.recent(), Duration::from_millis(360));
        assert_eq!(wait.expected_wait(2), Duration::from_millis(360));
    }

    #[test]
    fn a_request_is_refused_once_its_wait_would_pass_the_bound_and_places_are_given_back() {
        // One at a time, 10 ms each, at most 10 ms of wait: one running and one waiting fit.
        let ten = Duration::from_millis(10);
        let wait = ExpectedWait::new(1, ten, ten);
        let first = wait.admit().expect("nothing ahead");
        let second = wait.admit().expect("one step ahead: 10 ms");
        assert!(wait.admit().is_none(), "two steps ahead: 20 ms");
        drop(first);
        let third = wait
            .admit()
            .expect("one ahead again (the refusal gave its place back)");
        drop((second, third));
        assert_eq!(wait.admitted.load(Ordering::Acquire), 0);
    }
}
