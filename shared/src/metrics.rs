//! Prometheus metrics: one registry per process, the HTTP metrics every service shares, and the
//! `/metrics` handler. Services register their own counters on the same registry.

use actix_web::{HttpResponse, web};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The registry and the per-request metrics recorded by [`crate::telemetry::observe`].
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `http_requests_total{route, method, status}`.
    pub requests: IntCounterVec,
    /// `http_request_duration_seconds{route}`.
    pub latency: HistogramVec,
}

impl Metrics {
    /// A fresh registry with the HTTP metrics registered; `service` becomes a constant label.
    pub fn new(service: &str) -> Self {
        let labels = std::iter::once(("service".to_owned(), service.to_owned())).collect();
        let registry =
            Registry::new_custom(None, Some(labels)).expect("static registry options are valid");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route pattern and status",
            ),
            &["route", "method", "status"],
        )
        .expect("static metric options are valid");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer an HTTP request",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .expect("static metric options are valid");
        let m = Self {
            registry,
            requests,
            latency,
        };
        m.register(Box::new(m.requests.clone()));
        m.register(Box::new(m.latency.clone()));
        m
    }

    /// Register a service-specific collector. Names are static, so a clash is a programming error.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        self.registry
            .register(c)
            .expect("metric names are unique within a service");
    }

    /// `metric`, registered on this registry (the typed constructors below go through this).
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, metric: C) -> C {
        self.register(Box::new(metric.clone()));
        metric
    }

    /// An `IntCounter` registered on this registry.
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("static metric options are valid"))
    }

    /// An `IntCounterVec` registered on this registry.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(
            IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric options are valid"),
        )
    }

    /// An `IntGauge` registered on this registry.
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("static metric options are valid"))
    }

    /// An `IntGaugeVec` registered on this registry.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(
            IntGaugeVec::new(Opts::new(name, help), labels)
                .expect("static metric options are valid"),
        )
    }

    /// A `Histogram` with these bucket bounds (seconds), registered on this registry.
    pub fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        self.add(
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("static metric options are valid"),
        )
    }

    /// A `HistogramVec` with these bucket bounds (seconds), registered on this registry.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
        labels: &[&str],
    ) -> HistogramVec {
        self.add(
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("static metric options are valid"),
        )
    }

    /// Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// `GET /metrics`.
pub async fn handler(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_http_and_service_metrics_with_the_service_label() {
        let m = Metrics::new("test-svc");
        m.requests.with_label_values(&["/x/", "GET", "200"]).inc();
        m.counter_vec("codes_issued_total", "codes", &["kind"])
            .with_label_values(&["sms"])
            .inc();
        let text = m.render();
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/x/",status="200",service="test-svc"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"codes_issued_total{kind="sms",service="test-svc"} 1"#),
            "{text}"
        );
    }
}
