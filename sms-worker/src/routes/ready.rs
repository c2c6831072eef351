//! `GET /readyz`: 200 when both Redis databases answer and the worker is not stopping.

use actix_web::{HttpResponse, web};
use shared::redis_client::RedisClient;
use tokio::sync::watch;

use crate::markers::SentMarkers;

/// What readiness and the queue-depth gauge look at.
#[derive(Clone)]
pub struct Probes {
    pub queue: RedisClient,
    pub markers: SentMarkers,
    pub stopping: watch::Receiver<bool>,
    /// The queue's `active` list and `scheduled` set keys (from the shared apalis config).
    pub active_key: String,
    pub scheduled_key: String,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("active_key", &self.active_key)
            .finish_non_exhaustive()
    }
}

pub async fn readyz(probes: web::Data<Probes>) -> HttpResponse {
    let (queue, markers) = tokio::join!(probes.queue.ping(), probes.markers.ping());
    let running = if *probes.stopping.borrow() {
        Err("shutting down".to_owned())
    } else {
        Ok(())
    };
    shared::http::readiness(&[
        ("queue_redis", queue),
        ("verify_redis", markers),
        ("worker", running),
    ])
}
