//! One circuit breaker per provider, in memory (each worker process judges for itself: a
//! breaker only decides where this process sends next, so sharing it buys little).
//!
//! Closed: calls go through; `failures` retryable failures or timeouts in a row open it.
//! Open: the provider is skipped until `cooldown` has passed. Half-open: one job probes it; a
//! success closes the breaker, a failure opens it for another cool-down. A probe that never
//! reports (its job was requeued) is given up after another cool-down.

use std::sync::Mutex;
use std::time::Instant;

use prometheus::IntGauge;

use crate::config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_since: Instant },
}

/// A provider's breaker; `gauge` is its `sms_provider_breaker_state` (0 closed, 1 open,
/// 2 half-open).
#[derive(Debug)]
pub struct Breaker {
    settings: config::Breaker,
    state: Mutex<State>,
    gauge: IntGauge,
}

impl Breaker {
    pub fn new(settings: config::Breaker, gauge: IntGauge) -> Self {
        gauge.set(0);
        Self {
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
            gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is one small value, always written whole: a panic elsewhere cannot leave
        // it half-updated.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, state: &mut State, next: State) {
        *state = next;
        self.gauge.set(match next {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        });
    }

    /// Whether a job may use the provider now (taking the half-open probe if it is due).
    pub fn allows(&self) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if now < until => false,
            State::HalfOpen { probe_since } if now < probe_since + self.settings.cooldown => false,
            State::Open { .. } | State::HalfOpen { .. } => {
                self.set(&mut state, State::HalfOpen { probe_since: now });
                true
            }
        }
    }

    /// The provider answered (sent, or refused for a reason of the number).
    pub fn success(&self) {
        let mut state = self.lock();
        self.set(&mut state, State::Closed { failures: 0 });
    }

    /// A retryable failure, a timeout, or an account-level refusal.
    pub fn failure(&self) {
        let open = State::Open {
            until: Instant::now() + self.settings.cooldown,
        };
        let mut state = self.lock();
        match *state {
            State::Closed { failures } if failures + 1 < self.settings.failures => {
                self.set(
                    &mut state,
                    State::Closed {
                        failures: failures + 1,
                    },
                );
            }
            _ => self.set(&mut state, open),
        }
    }

    /// 0 closed, 1 open, 2 half-open (what the gauge shows).
    pub fn state(&self) -> i64 {
        self.gauge.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn breaker(cooldown_ms: u64) -> Breaker {
        Breaker::new(
            config::Breaker {
                failures: 3,
                cooldown: Duration::from_millis(cooldown_ms),
            },
            IntGauge::new("g", "g").expect("valid gauge"),
        )
    }

    #[test]
    fn opens_after_n_failures_in_a_row_and_a_success_resets_the_count() {
        let b = breaker(60_000);
        b.failure();
        b.failure();
        b.success();
        b.failure();
        b.failure();
        assert!(b.allows(), "two in a row since the success");
        b.failure();
        assert_eq!(b.state(), 1);
        assert!(!b.allows());
    }

    #[test]
    fn half_opens_once_after_the_cooldown_then_closes_or_opens_again() {
        let b = breaker(30);
        for _ in 0..3 {
            b.failure();
        }
        assert!(!b.allows());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allows(), "the probe");
        assert_eq!(b.state(), 2);
        assert!(!b.allows(), "only one probe at a time");
        b.failure();
        assert_eq!(b.state(), 1, "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allows());
        b.success();
        assert_eq!(b.state(), 0);
        assert!(b.allows() && b.allows());
    }
}
