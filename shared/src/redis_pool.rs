//! The Redis connection pool every service builds once at start-up.
//!
//! Timeouts are short and explicit: when Redis is down a request must fail fast with a 503, not
//! hang; when it comes back the pool replaces broken connections on its own (deadpool recycles
//! each connection with a PING before handing it out).

use std::time::Duration;

use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};

/// Build a pool for `url`. Nothing connects until the first checkout.
pub fn build(url: &str, max_size: usize, timeout: Duration) -> anyhow::Result<Pool> {
    let mut cfg = Config::from_url(url);
    cfg.pool = Some(PoolConfig {
        max_size,
        timeouts: Timeouts {
            wait: Some(timeout),
            create: Some(timeout),
            recycle: Some(timeout),
        },
        ..PoolConfig::default()
    });
    cfg.create_pool(Some(Runtime::Tokio1))
        .map_err(|e| anyhow::anyhow!("cannot build the Redis pool for {}: {e}", redacted(url)))
}

/// `PING` through the pool, for `/readyz`.
pub async fn ping(pool: &Pool) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A URL with its password replaced, for log lines.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted("redis://:secret@host:6379/2"),
            "redis://***@host:6379/2"
        );
        assert_eq!(redacted("mysql://u:p@h/db"), "mysql://***@h/db");
        assert_eq!(
            redacted("redis://127.0.0.1:6379/2"),
            "redis://127.0.0.1:6379/2"
        );
    }

    #[test]
    fn a_pool_builds_without_connecting() {
        build("redis://127.0.0.1:1/0", 4, Duration::from_millis(100)).expect("lazy");
    }
}
