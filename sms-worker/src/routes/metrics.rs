//! `GET /metrics`: the registry, with the queue depth read from Redis at scrape time (a gauge
//! sampled on demand is exact and costs nothing between scrapes).

use actix_web::{HttpResponse, web};

use super::Probes;
use crate::metrics::WorkerMetrics;

pub async fn metrics(metrics: web::Data<WorkerMetrics>, probes: web::Data<Probes>) -> HttpResponse {
    let depth = redis::pipe()
        .cmd("LLEN")
        .arg(&probes.active_key)
        .cmd("ZCARD")
        .arg(&probes.scheduled_key)
        .query_async::<(i64, i64)>(&mut probes.queue.clone())
        .await;
    match depth {
        Ok((active, scheduled)) => {
            metrics
                .queue_depth
                .with_label_values(&["active"])
                .set(active);
            metrics
                .queue_depth
                .with_label_values(&["scheduled"])
                .set(scheduled);
        }
        // Leave the last known values; the failure shows in /readyz.
        Err(e) => tracing::debug!(error = %e, "queue depth not readable"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.registry.render())
}
