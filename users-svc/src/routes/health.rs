//! `/healthz` (alive) and `/readyz` (MariaDB and Redis reachable).

use actix_web::{HttpResponse, web};
use deadpool_redis::Pool;

/// `GET /readyz`: 200 when Redis answers a PING, else 503 naming what failed.
pub async fn readyz(redis: web::Data<Pool>) -> HttpResponse {
    shared::http::readiness(&[("redis", shared::redis_pool::ping(&redis).await)])
}
