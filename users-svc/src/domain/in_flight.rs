//! One registration at a time per username and per mobile in this process.
//!
//! Registrations of the same name (or number) that arrive together would all pass the "taken"
//! lookup, all spend a password hash, and all but one then hit the unique index. Here the later
//! ones wait for the one in flight and then run their own checks, which see its row: 20
//! simultaneous sign-ups of one name cost one hash and nineteen quick "taken" answers, and none
//! of them takes a hashing slot from somebody else. The unique indexes stay the guard (other
//! instances, a wait that ran out): this only saves the work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// The keys being registered right now, each with the lock its requests queue on.
#[derive(Debug, Default)]
pub struct InFlight {
    keys: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Held while a registration runs; releases its keys when dropped.
#[derive(Debug)]
pub struct Claim<'a> {
    owner: &'a InFlight,
    held: Vec<(String, OwnedMutexGuard<()>)>,
}

impl InFlight {
    /// Wait until no other registration of this process holds any of `keys`, at most `wait`
    /// per key (then go on without it), and hold them. Keys are taken in sorted order, so two
    /// requests sharing two keys cannot wait for each other.
    pub async fn claim(&self, mut keys: Vec<String>, wait: Duration) -> Claim<'_> {
        keys.sort();
        keys.dedup();
        let mut held = Vec::with_capacity(keys.len());
        for key in keys {
            let lock = Arc::clone(
                self.keys
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(key.clone())
                    .or_default(),
            );
            match tokio::time::timeout(wait, lock.lock_owned()).await {
                Ok(guard) => held.push((key, guard)),
                Err(_) => tracing::debug!(%key, "registration still in flight; going on"),
            }
        }
        Claim { owner: self, held }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut keys = self
            .owner
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (key, guard) in self.held.drain(..) {
            drop(guard);
            // Nobody else holds or waits for it (the map's reference is the last): forget it.
            if keys
                .get(&key)
                .is_some_and(|lock| Arc::strong_count(lock) == 1)
            {
                keys.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_claim_of_a_key_waits_for_the_first_and_the_map_is_emptied() {
        let in_flight = InFlight::default();
        let wait = Duration::from_secs(5);
        let first = in_flight
            .claim(vec!["u:tom".into(), "m:1".into()], wait)
            .await;
        let second = in_flight.claim(vec!["m:1".into()], wait);
        tokio::pin!(second);
        assert!(
            futures::poll!(second.as_mut()).is_pending(),
            "the key is held"
        );
        drop(first);
        let second = second.await;
        assert_eq!(second.held.len(), 1);
        drop(second);
        assert!(in_flight.keys.lock().expect("lock").is_empty());
    }
}
