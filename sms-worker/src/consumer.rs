//! Consuming the SMS queue with apalis (docs/dependencies.md §2, traps 1–5).
//!
//! - The storage is the shared one (`shared::queue::QueueSettings::storage`): same Redis, same
//!   queue name as the producer. Only the consumer-side knobs are changed here: batch size,
//!   heartbeat interval and missed heartbeats.
//! - `poll_with_interval`: apalis-redis does not wake an idle worker when a job is pushed, so
//!   without polling a new job would wait for the next heartbeat.
//! - Each worker registration gets a unique name (host, pid, random, generation): a reused name
//!   whose heartbeat is still fresh is refused by apalis-redis, and it would hide a dead
//!   process's jobs from orphan recovery.
//! - Orphan recovery: a worker that misses `SMS_WORKER_MISSED_HEARTBEATS` heartbeats of
//!   `SMS_WORKER_HEARTBEAT_SECS` is dead; the next heartbeat of any live worker moves the jobs
//!   it held back to the queue (apalis-redis `reenqueue_orphaned.lua`).
//! - `.concurrency()` is the only tower layer: retries and timeouts are the deliverer's own,
//!   because they must respect the code's expiry and the provider's answer classes.
//! - When the worker fails (Redis restarted and forgot the registration, a connection error),
//!   a fresh worker with a new name replaces it after a short pause, so the process resumes by
//!   itself; whatever the failed one held is recovered as an orphan.
//! - The worker takes each job's stored bytes as they are ([`RawJob`]) and decodes them in the
//!   job function: a payload that does not decode goes to the dead-letter list
//!   ([`crate::dead_letter`]) instead of failing apalis' stream, which would stop the worker.
//! - Beside the worker runs [`crate::housekeeping`]: the backlog guard and the reaper of
//!   finished jobs, two things apalis-redis leaves undone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use shared::queue::SmsStorage;
use shared::redis_client::RedisClient;
use tokio::sync::watch;

use crate::config;
use crate::dead_letter::{DeadLetters, RawCodec, RawJob};
use crate::delivery::{Deliverer, Outcome};
use crate::housekeeping;

/// The queue consumer of this process.
#[derive(Debug, Clone)]
pub struct Consumer {
    storage: SmsStorage,
    settings: config::Consumer,
    deliverer: Arc<Deliverer>,
    dead_letters: DeadLetters,
    instance: String,
}

impl Consumer {
    /// A consumer of `storage` (the shared SMS storage) with this process's settings; jobs that
    /// do not decode go to `dead_letters`.
    pub fn new(
        storage: SmsStorage,
        settings: config::Consumer,
        deliverer: Arc<Deliverer>,
        dead_letters: DeadLetters,
    ) -> Self {
        let apalis_config = storage
            .get_config()
            .clone()
            .batch_size(settings.batch_size)
            .heartbeat_interval(settings.heartbeat)
            .missed_heartbeats(settings.missed_heartbeats)
            // Task leases would add one Lua call per job whose `LREM` scans the whole active
            // list (quadratic under a backlog); the per-worker in-flight set already keeps a
            // job with one worker, and orphan recovery works on that set, not on leases.
            .lock_tasks(false)
            // Pub/sub task events feed apalis-board only; nobody here subscribes.
            .emit_events(false);
        Self {
            storage: storage.with_config(apalis_config),
            settings,
            deliverer,
            dead_letters,
            instance: instance_name(),
        }
    }

    /// This process's worker-name prefix.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Consume until `stop` turns true, then let in-flight jobs finish and hand back the
    /// prefetched ones. Workers that fail are replaced.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let chores = tokio::spawn(housekeeping::run(
            self.storage.clone(),
            self.settings.retention,
            stop.clone(),
        ));
        self.consume(stop).await;
        chores.abort();
    }

    async fn consume(&self, mut stop: watch::Receiver<bool>) {
        let mut pause = Duration::from_millis(250);
        for generation in 1u64.. {
            if *stop.borrow() {
                return;
            }
            let name = format!("{}-{generation}", self.instance);
            let backend = self
                .raw_storage()
                .with_codec(RawCodec)
                .poll_with_interval(self.settings.poll_interval);
            let worker = WorkerBuilder::new(name.as_str())
                .backend(backend)
                .concurrency(self.settings.concurrency)
                .data(self.deliverer.clone())
                .data(self.dead_letters.clone())
                .build(handle);
            let mut signal_rx = stop.clone();
            let signal = async move {
                // An error means the sender is gone, which also means "stop".
                let _ = signal_rx.wait_for(|s| *s).await;
                Ok::<(), WorkerError>(())
            };
            tracing::info!(worker = %name, concurrency = self.settings.concurrency, "consuming the SMS queue");
            let started = Instant::now();
            match worker.run_until(signal).await {
                Ok(()) => {
                    self.release_stranded(&name).await;
                    tracing::info!(worker = %name, "queue worker stopped");
                    return;
                }
                Err(e) => {
                    if *stop.borrow() {
                        return;
                    }
                    if started.elapsed() > Duration::from_secs(30) {
                        pause = Duration::from_millis(250);
                    }
                    tracing::warn!(worker = %name, error = %e, pause_ms = pause.as_millis() as u64, "queue worker failed; starting a new one");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The same queue as [`Consumer::storage`], handing each job over as its stored bytes.
    fn raw_storage(&self) -> RedisStorage<RawJob, RedisClient> {
        RedisStorage::new(self.storage.clone().get_connection().clone())
            .with_config(self.storage.get_config().clone())
    }

    /// After a clean stop, every job this worker ran is acknowledged and the prefetched ones
    /// were handed back, so whatever is still in its in-flight set came from a fetch cut short
    /// by the stop. apalis has already removed the worker from the registry, so orphan recovery
    /// would never see those jobs: put them back in the queue now.
    async fn release_stranded(&self, name: &str) {
        let config = self.storage.get_config();
        let inflight = format!("{}:{name}", config.inflight_jobs_set());
        let mut conn = self
            .storage
            .clone()
            .get_connection()
            .replay(shared::redis_client::Replay::Safe);
        match housekeeping::release_inflight(&mut conn, &inflight, &config.active_jobs_list()).await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(worker = %name, jobs = n, "handed back jobs fetched during the stop")
            }
            Err(e) => {
                tracing::warn!(worker = %name, error = %e, "could not hand back jobs fetched during the stop")
            }
        }
    }
}

/// The apalis job function: decode the job (or bury it as a dead letter), deliver on the
/// multi-threaded runtime (the worker itself polls its jobs from one task) and tell apalis
/// whether the job is done.
async fn handle(
    raw: RawJob,
    task_id: TaskId,
    worker: WorkerContext,
    deliverer: Data<Arc<Deliverer>>,
    dead_letters: Data<DeadLetters>,
) -> Result<(), BoxDynError> {
    let job = match raw.decode() {
        Ok(job) => job,
        Err(reason) => {
            let id = task_id.to_string();
            // If the list cannot be written the error sends the job back to the queue: it is
            // tried again later, and the worker goes on.
            dead_letters.bury(&id, &raw, &reason, worker.name()).await?;
            deliverer.count_dead_letter();
            tracing::error!(task_id = %id, %reason, "undecodable job moved to the dead-letter list");
            return Ok(());
        }
    };
    let deliverer = Arc::clone(&deliverer);
    let outcome = tokio::spawn(async move { deliverer.deliver(&job).await }).await?;
    match outcome {
        // An error makes apalis-redis schedule the job again, for another worker.
        Outcome::Requeued => Err("worker stopping before the job's next attempt".into()),
        // Every other outcome is final: a failed job must not come back from the queue.
        _ => Ok(()),
    }
}

/// `sms-worker-{host}-{pid}-{random}`: unique per process, readable in `redis-cli`.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let random = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("sms-worker-{host}-{}-{random}", std::process::id())
}
