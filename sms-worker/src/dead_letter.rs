//! Jobs whose payload does not decode as a `SendSmsCode`: a rolling deploy that renamed a field,
//! a job pushed by hand. They go to the **dead-letter list** `{SMS_QUEUE}:dead_letter` (default
//! `meiduo:sms_codes:dead_letter`) in the queue's Redis, with the reason, and are acknowledged:
//! they never stop the queue worker or come back.
//!
//! Why the worker decodes itself: apalis-core 1.0's `DurableBackend` decodes each fetched job
//! with the storage's codec, and a codec error is an error of the worker's stream, which ends
//! `run_until`; the failed worker's whole batch then sat in its in-flight set until orphan
//! recovery handed it back 20–25 s later, to kill the next worker the same way. So the worker's
//! storage hands over the stored bytes untouched ([`RawCodec`]) and the job function decodes.
//!
//! An entry is one JSON object: `{"task_id", "reason", "payload", "worker", "at"}` (`payload`:
//! the stored bytes as text, lossy, at most [`MAX_PAYLOAD`] bytes; `at`: RFC 3339, UTC). The
//! list is newest first and keeps the last [`MAX_ENTRIES`]: `LRANGE meiduo:sms_codes:dead_letter
//! 0 -1` shows them.

use apalis::prelude::Codec;
use serde_json::json;
use shared::jobs::SendSmsCode;
use shared::redis_client::{RedisClient, Replay};

/// The list's key is the queue name plus this.
pub const KEY_SUFFIX: &str = ":dead_letter";
/// Entries kept (older ones are trimmed).
pub const MAX_ENTRIES: isize = 1000;
/// Bytes of the payload kept in an entry.
pub const MAX_PAYLOAD: usize = 2048;

/// A job as stored, not yet decoded.
#[derive(Debug, Clone)]
pub struct RawJob(pub Vec<u8>);

impl RawJob {
    /// The job, or why it is not one.
    pub fn decode(&self) -> Result<SendSmsCode, String> {
        serde_json::from_slice(&self.0).map_err(|e| e.to_string())
    }
}

/// The worker's codec: the stored bytes as they are; it cannot fail.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec<RawJob> for RawCodec {
    type Compact = Vec<u8>;
    type Error = std::convert::Infallible;

    fn encode(&self, job: &RawJob) -> Result<Vec<u8>, Self::Error> {
        Ok(job.0.clone())
    }

    fn decode(&self, stored: &Vec<u8>) -> Result<RawJob, Self::Error> {
        Ok(RawJob(stored.clone()))
    }
}

/// The dead-letter list of one queue.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    conn: RedisClient,
    key: String,
}

impl DeadLetters {
    /// The list of queue `queue` (its `SMS_QUEUE` name), in the queue's Redis.
    pub fn new(conn: RedisClient, queue: &str) -> Self {
        Self {
            conn,
            key: key(queue),
        }
    }

    /// Put `job` (task `task_id`, taken by `worker`) on the list with `reason`. `LPUSH` and
    /// `LTRIM` in one `MULTI`, never resent ([`Replay::Never`]): a second run would list the job
    /// twice.
    pub async fn bury(
        &self,
        task_id: &str,
        job: &RawJob,
        reason: &str,
        worker: &str,
    ) -> redis::RedisResult<()> {
        let payload = &job.0[..job.0.len().min(MAX_PAYLOAD)];
        let entry = json!({
            "task_id": task_id,
            "reason": reason,
            "payload": String::from_utf8_lossy(payload),
            "worker": worker,
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        redis::pipe()
            .atomic()
            .lpush(&self.key, entry.to_string())
            .ignore()
            .ltrim(&self.key, 0, MAX_ENTRIES - 1)
            .ignore()
            .query_async(&mut self.conn.replay(Replay::Never))
            .await
    }
}

/// `{queue}:dead_letter`.
pub fn key(queue: &str) -> String {
    format!("{queue}{KEY_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_bytes_come_through_the_codec_and_say_why_they_are_no_job() {
        for bytes in [
            &b"garbage"[..],
            b"",
            b"{\"mobile\":\"13800138000\"}",
            b"\xff\xfe",
        ] {
            let raw = RawCodec.decode(&bytes.to_vec()).expect("infallible");
            assert_eq!(raw.0, bytes);
            assert!(raw.decode().is_err());
        }
        assert_eq!(
            RawJob(b"garbage".to_vec()).decode().expect_err("not JSON"),
            "expected value at line 1 column 1"
        );
        assert_eq!(key("meiduo:sms_codes"), "meiduo:sms_codes:dead_letter");
    }
}
