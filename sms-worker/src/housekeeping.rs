//! Two chores apalis-redis 1.0 leaves to its users, run beside the worker once a second:
//!
//! - **Backlog guard.** apalis-redis's fetch moves *all* due scheduled jobs to the active list
//!   with one Lua `unpack`, which Redis refuses beyond about 8000 values ("too many results to
//!   unpack"). Producers push into the scheduled set, so a backlog that large (workers down for
//!   a few seconds at peak) would make every fetch fail, forever. [`promote_backlog`] moves due
//!   jobs over in chunks whenever more than one chunk is due.
//! - **Reaper.** A finished job keeps its payload (`{queue}:data`, the plaintext code
//!   included), its metadata hash (`{queue}:meta:{id}`) and its id in `{queue}:done` (or, for
//!   a job apalis gave up on, `{queue}:dead`) forever: about 0.5 KB per SMS, without bound.
//!   [`reap_finished`] deletes jobs of both sets finished longer than `SMS_QUEUE_RETENTION_SECS`
//!   ago (default 600 s: the code's 300 s life plus a margin for inspection, so a code does
//!   not outlive its use in Redis by much).
//!
//! Every worker process runs them; the scripts are atomic, so running them twice is harmless,
//! which is also why their commands may be resent after a dead connection (`Replay::Safe`): a
//! second promote or release moves the next chunk, a second reap finds the first one's work
//! done.
//! The scripts are statics: built (and hashed) once, not on every one-second round.

use std::sync::LazyLock;
use std::time::Duration;

use shared::queue::SmsStorage;
use shared::redis_client::{RedisClient, Replay};
use tokio::sync::watch;

/// Jobs handled per script call: well below Lua's `unpack` limit, short enough not to block
/// Redis noticeably.
const CHUNK: usize = 1000;
/// Script calls per chore and round, so a huge pile is worked off over several rounds.
const MAX_CALLS: usize = 20;

/// Move up to ARGV[2] due jobs (score ≤ ARGV[1]) from the scheduled set to the active list.
static PROMOTE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local ids = redis.call('zrangebyscore', KEYS[1], 0, ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
        if #ids > 0 then
            redis.call('rpush', KEYS[2], unpack(ids))
            redis.call('zrem', KEYS[1], unpack(ids))
        end
        return #ids",
    )
});

/// Sample up to ARGV[2] ids of a finished set (KEYS[1]: done or dead) and delete those
/// finished at or before ARGV[1]: payload (KEYS[2]), metadata (KEYS[3]:id) and set entry.
static REAP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local ids = redis.call('srandmember', KEYS[1], tonumber(ARGV[2]))
        local reaped = 0
        for _, id in ipairs(ids) do
            local meta = KEYS[3] .. ':' .. id
            local done_at = tonumber(redis.call('hget', meta, 'done_at') or '0') or 0
            if done_at <= tonumber(ARGV[1]) then
                redis.call('hdel', KEYS[2], id)
                redis.call('del', meta)
                redis.call('srem', KEYS[1], id)
                reaped = reaped + 1
            end
        end
        return {reaped, #ids}",
    )
});

/// Move up to ARGV[1] ids of an in-flight set (KEYS[1]) to the end of the active list.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local ids = redis.call('srandmember', KEYS[1], tonumber(ARGV[1]))
        if #ids > 0 then
            redis.call('rpush', KEYS[2], unpack(ids))
            redis.call('srem', KEYS[1], unpack(ids))
        end
        return #ids",
    )
});

/// Run both chores every second until `stop`.
pub async fn run(storage: SmsStorage, retention: Duration, mut stop: watch::Receiver<bool>) {
    let config = storage.get_config().clone();
    let keys = Keys {
        scheduled: config.scheduled_jobs_set(),
        active: config.active_jobs_list(),
        done: config.done_jobs_set(),
        dead: config.dead_jobs_set(),
        data: config.job_data_hash(),
        meta: config.job_meta_hash(),
    };
    let mut conn = storage.clone().get_connection().replay(Replay::Safe);
    loop {
        match promote_backlog(&mut conn, &keys).await {
            Ok(0) => {}
            Ok(moved) => tracing::info!(
                moved,
                "moved a large backlog of due jobs to the active list"
            ),
            Err(e) => tracing::debug!(error = %e, "backlog check failed"),
        }
        match reap_finished(&mut conn, &keys, retention).await {
            Ok(0) => {}
            Ok(reaped) => tracing::debug!(reaped, "deleted finished jobs"),
            Err(e) => tracing::debug!(error = %e, "reaping finished jobs failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The queue's Redis keys (from the shared apalis config).
#[derive(Debug, Clone)]
pub struct Keys {
    pub scheduled: String,
    pub active: String,
    pub done: String,
    pub dead: String,
    pub data: String,
    pub meta: String,
}

/// Move due jobs from the scheduled set to the end of the active list (what apalis-redis's
/// fetch does), `CHUNK` at a time, while more than `CHUNK` are due. Returns how many moved.
pub async fn promote_backlog(conn: &mut RedisClient, keys: &Keys) -> redis::RedisResult<usize> {
    let mut moved = 0;
    for _ in 0..MAX_CALLS {
        let now = chrono::Utc::now().timestamp();
        let due: usize = redis::cmd("ZCOUNT")
            .arg(&keys.scheduled)
            .arg(0)
            .arg(now)
            .query_async(conn)
            .await?;
        if due <= CHUNK {
            break;
        }
        moved += PROMOTE
            .key(&keys.scheduled)
            .key(&keys.active)
            .arg(now)
            .arg(CHUNK)
            .invoke_async::<usize>(conn)
            .await?;
    }
    Ok(moved)
}

/// Delete jobs in the done and dead sets that finished at least `retention` ago: payload,
/// metadata and set entry. Samples each set at random (`SRANDMEMBER`), so it needs no cursor
/// and copes with ids arriving meanwhile; keeps going while most of a sample was old enough.
pub async fn reap_finished(
    conn: &mut RedisClient,
    keys: &Keys,
    retention: Duration,
) -> redis::RedisResult<usize> {
    let retention = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let mut reaped = 0;
    // Dead jobs (apalis gave up on them) hold codes just as done ones do.
    for set in [&keys.done, &keys.dead] {
        for _ in 0..MAX_CALLS {
            let cutoff = chrono::Utc::now().timestamp().saturating_sub(retention);
            let (n, sampled): (usize, usize) = REAP
                .key(set)
                .key(&keys.data)
                .key(&keys.meta)
                .arg(cutoff)
                .arg(CHUNK)
                .invoke_async(conn)
                .await?;
            reaped += n;
            if n * 2 < sampled || sampled < CHUNK {
                break;
            }
        }
    }
    Ok(reaped)
}

/// Move every job id in the in-flight set `inflight` back to the end of `active`.
pub async fn release_inflight(
    conn: &mut RedisClient,
    inflight: &str,
    active: &str,
) -> redis::RedisResult<usize> {
    let mut moved = 0;
    for _ in 0..MAX_CALLS {
        let n: usize = RELEASE
            .key(inflight)
            .key(active)
            .arg(CHUNK)
            .invoke_async(conn)
            .await?;
        moved += n;
        if n < CHUNK {
            break;
        }
    }
    Ok(moved)
}
