//! Load shedding: a process answers at most `MAX_IN_FLIGHT` requests at once; one more is
//! refused at once with the usual 503 body and `Retry-After: 1` instead of queueing behind the
//! others.
//!
//! Why a count of requests in flight: past its capacity a server's queue only grows, and every
//! request in it waits longer, until clients time out and retry (more load) and the gateway
//! answers 504 (a 5xx the client cannot act on). By Little's law a bounded number in flight is a
//! bounded wait: at capacity C requests/s, `MAX_IN_FLIGHT / C` seconds at most. The check is
//! one atomic add, no round trip; a refusal skips the handler and its round trips, though not
//! the connection and HTTP parsing in front of it (bench/RESULTS.md, overload). The default
//! (1024 per worker, `shared::config::Listen`) sits above what a dependency restart piles up:
//! requests waiting out `REDIS_TIMEOUT_MS` for Redis to come back are in flight too, and
//! shedding them would turn a restart the service rides through into 503s. The endpoints with
//! an expensive step refuse earlier and more precisely on their own (the expected wait for a
//! captcha render or a registration's hash, [`crate::expected_wait`]); this bound is for
//! everything else and for all of them together. Probes and metrics are never shed: an overloaded process is alive and ready, and
//! restarting it or taking it out of rotation would only move its load onto the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::ResponseError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::IntCounter;

use super::error::ApiError;
use crate::metrics::Metrics;

/// `Retry-After` of a shed request: the overload is measured in milliseconds, not seconds.
pub const SHED_RETRY_AFTER_SECS: u64 = 1;

/// How often, at most, a process logs that it is shedding.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The process-wide count of requests in flight and its bound.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    in_flight: AtomicUsize,
    shed: IntCounter,
    /// Requests shed since the last log line, and when that line was written.
    unlogged: AtomicUsize,
    started: Instant,
    last_log_ms: AtomicU64,
}

impl Admission {
    /// At most `max` requests in flight (0 = no bound); `http_requests_shed_total` is registered
    /// on `metrics`.
    pub fn new(max: usize, metrics: &Metrics) -> web::Data<Self> {
        let shed = metrics.counter(
            "http_requests_shed_total",
            "Requests refused with 503 because MAX_IN_FLIGHT requests were already in flight",
        );
        web::Data::new(Self {
            max,
            in_flight: AtomicUsize::new(0),
            shed,
            unlogged: AtomicUsize::new(0),
            started: Instant::now(),
            last_log_ms: AtomicU64::new(0),
        })
    }

    /// A slot, or `None` when `max` requests are already in flight.
    fn enter(self: &Arc<Self>) -> Option<Slot> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.max != 0 && before >= self.max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.count_shed();
            return None;
        }
        Some(Slot(Arc::clone(self)))
    }

    /// Count a shed request; one warn line per [`LOG_EVERY`] at most, with how many were shed.
    fn count_shed(&self) {
        self.shed.inc();
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_log_ms.load(Ordering::Relaxed);
        let every_ms = u64::try_from(LOG_EVERY.as_millis()).unwrap_or(u64::MAX);
        let due = last == 0 || now_ms.saturating_sub(last) >= every_ms;
        if due
            && self
                .last_log_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let shed = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(
                max_in_flight = self.max,
                shed,
                "overloaded: refusing requests with 503 (MAX_IN_FLIGHT requests already in flight)"
            );
        }
    }
}

/// One admitted request; leaving (answer sent, or the client went away) frees the slot.
struct Slot(Arc<Admission>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Paths never shed: liveness, readiness and metrics must answer while the process is busy.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The middleware: admit within [`Admission`]'s bound, otherwise 503 + `Retry-After` at once.
/// Without an [`Admission`] in the app data every request is admitted.
pub async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let admission = req.app_data::<web::Data<Admission>>().cloned();
    let slot = match admission {
        Some(a) if !exempt(req.path()) => match a.into_inner().enter() {
            Some(slot) => Some(slot),
            None => {
                let refusal = ApiError::UnavailableFor {
                    retry_after: SHED_RETRY_AFTER_SECS,
                }
                .error_response();
                return Ok(req.into_response(refusal).map_into_right_body());
            }
        },
        _ => None,
    };
    let res = next.call(req).await?;
    drop(slot);
    Ok(res.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::{StatusCode, header};
    use actix_web::{App, HttpResponse, middleware::from_fn, test};

    #[actix_web::test]
    async fn one_request_over_the_bound_is_refused_at_once_and_the_slot_comes_back() {
        let metrics = Metrics::new("t");
        let admission = Admission::new(1, &metrics);
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let held = Arc::new(std::sync::Mutex::new(Some(held)));
        let app = test::init_service(
            App::new()
                .wrap(from_fn(admit))
                .app_data(admission.clone())
                .route(
                    "/slow/",
                    web::get().to(move || {
                        let wait = held.lock().expect("lock").take();
                        async move {
                            if let Some(wait) = wait {
                                let _ = wait.await;
                            }
                            HttpResponse::Ok().finish()
                        }
                    }),
                )
                .route("/healthz", web::get().to(HttpResponse::Ok)),
        )
        .await;
        let first = test::call_service(&app, test::TestRequest::get().uri("/slow/").to_request());
        let (first, second) = tokio::join!(first, async {
            // The first request holds the only slot until `release`.
            tokio::task::yield_now().await;
            let second =
                test::call_service(&app, test::TestRequest::get().uri("/slow/").to_request()).await;
            let probe =
                test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request())
                    .await;
            release.send(()).expect("the first request waits");
            (second, probe)
        });
        let (second, probe) = second;
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(probe.status(), StatusCode::OK, "probes are never shed");
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            second
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let body = test::read_body(second).await;
        assert_eq!(
            &body[..],
            "{\"detail\":\"服务暂时不可用，请稍后重试\"}".as_bytes()
        );
        assert_eq!(admission.shed.get(), 1);
        // The slot came back: the next request is served.
        let third =
            test::call_service(&app, test::TestRequest::get().uri("/slow/").to_request()).await;
        assert_eq!(third.status(), StatusCode::OK);
        assert_eq!(admission.in_flight.load(Ordering::Acquire), 0);
    }
}
