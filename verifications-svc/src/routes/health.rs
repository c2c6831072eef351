//! `/readyz`: both Redis databases (verify codes and queue) reachable.

use actix_web::{HttpResponse, web};

use crate::state::Codes;

/// `GET /readyz`: 200 when the verify-codes Redis and the queue Redis answer a PING, else 503
/// naming what failed.
pub async fn readyz(codes: web::Data<Codes>) -> HttpResponse {
    let (redis, queue) = tokio::join!(codes.redis.ping(), codes.queue_connection.ping(),);
    shared::http::readiness(&[("redis", redis), ("queue", queue)])
}
