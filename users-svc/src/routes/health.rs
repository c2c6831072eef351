//! `/readyz`: MariaDB and Redis reachable (`/healthz` is the shared one).

use actix_web::{HttpResponse, web};
use shared::redis_client::RedisClient;

use crate::db::Db;

/// `GET /readyz`: 200 when MariaDB answers `SELECT 1` and Redis a PING (checked concurrently),
/// else 503 naming what failed.
pub async fn readyz(db: web::Data<Db>, redis: web::Data<RedisClient>) -> HttpResponse {
    let (db, redis) = tokio::join!(db.ping(), redis.ping());
    shared::http::readiness(&[("database", db), ("redis", redis)])
}
