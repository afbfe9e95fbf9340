//! Prometheus metrics: what an SRE alerts on and the dashboard plots. One registry per
//! process, written to from wherever the event happens (a request, a job, a seal) and
//! read at `GET /metrics` in the text exposition format (`promtool check metrics`
//! clean). Labels carry routes, states, models and causes: never ids or subjects.
//!
//! Figures that live in the catalog (jobs by state, the outbox) are refreshed every few
//! seconds by the service (`cli::serve`), not at scrape time, so scraping costs no query
//! however often it comes. This module depends on nothing of vcw's: anything may count.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub jobs: IntGaugeVec,
    pub jobs_finished: IntCounterVec,
    pub job_duration: HistogramVec,
    pub frames_sampled: IntCounter,
    pub inference: HistogramVec,
    pub sealed_bytes: IntCounter,
    pub opened_bytes: IntCounter,
    pub cache_requests: IntCounterVec,
    pub cache_evictions: IntCounterVec,
    pub cache_bytes: IntGauge,
    pub fanout: Histogram,
    pub outbox_pending: IntGauge,
    pub outbox_lag: Gauge,
    pub reaper_actions: IntCounterVec,
    pub integrity_failures: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let seconds = || prometheus::exponential_buckets(0.001, 4.0, 10).expect("buckets");
        let job_seconds = || prometheus::exponential_buckets(0.5, 2.0, 12).expect("buckets");
        let jobs = IntGaugeVec::new(
            Opts::new("vcw_jobs", "Jobs in the catalog by state"),
            &["state"],
        )
        .expect("valid metric");
        r.register(Box::new(jobs.clone())).expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let cache_bytes = gauge(
            "vcw_cache_bytes",
            "Decrypted bytes held by the segment cache",
        );
        let outbox_pending = gauge(
            "vcw_outbox_pending_events",
            "Outbox events (job announcements, webhooks) not yet delivered",
        );
        let outbox_lag = Gauge::new(
            "vcw_outbox_lag_seconds",
            "Age of the oldest undelivered outbox event",
        )
        .expect("valid metric");
        r.register(Box::new(outbox_lag.clone()))
            .expect("unique metric");
        let single = |c: IntCounterVec| c.with_label_values::<&str>(&[]);
        let fanout = histogram(
            &r,
            "vcw_revocation_fanout_duration_seconds",
            "From announcing a revocation to the last API node's acknowledgement",
            &[],
            seconds(),
        )
        .with_label_values::<&str>(&[]);
        Metrics {
            http_requests: counter(
                &r,
                "vcw_http_requests_total",
                "HTTP requests by route template and status",
                &["method", "route", "status"],
            ),
            http_duration: histogram(
                &r,
                "vcw_http_request_duration_seconds",
                "Time to the response head, by route template",
                &["route"],
                seconds(),
            ),
            jobs,
            jobs_finished: counter(
                &r,
                "vcw_jobs_finished_total",
                "Job attempts ended, by the state they left the job in",
                &["state"],
            ),
            job_duration: histogram(
                &r,
                "vcw_job_duration_seconds",
                "Duration of job attempts, by the state they left the job in",
                &["state"],
                job_seconds(),
            ),
            frames_sampled: single(counter(
                &r,
                "vcw_frames_sampled_total",
                "Frames sampled and classified",
                &[],
            )),
            inference: histogram(
                &r,
                "vcw_inference_duration_seconds",
                "Time one batch of frames spends in each model",
                &["model"],
                seconds(),
            ),
            sealed_bytes: single(counter(
                &r,
                "vcw_sealed_bytes_total",
                "Plaintext bytes sealed (SM4-CTR + CMAC)",
                &[],
            )),
            opened_bytes: single(counter(
                &r,
                "vcw_opened_bytes_total",
                "Plaintext bytes verified and decrypted",
                &[],
            )),
            cache_requests: counter(
                &r,
                "vcw_cache_requests_total",
                "Segment cache lookups by result (hit, miss)",
                &["result"],
            ),
            cache_evictions: counter(
                &r,
                "vcw_cache_evictions_total",
                "Segment cache evictions by cause (expired, size, revoked)",
                &["cause"],
            ),
            cache_bytes,
            fanout,
            outbox_pending,
            outbox_lag,
            reaper_actions: counter(
                &r,
                "vcw_reaper_actions_total",
                "What the reaper did, by action",
                &["action"],
            ),
            integrity_failures: counter(
                &r,
                "vcw_integrity_failures_total",
                "Sealed objects refused on opening: swapped or misplaced (wrong_object), an older or altered copy (mismatch), unknown to the catalog (unknown_object), or failing authentication",
                &["kind"],
            ),
            registry: r,
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!("metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Counts one reaper action `n` times.
pub fn reaper(action: &str, n: u64) {
    if n > 0 {
        metrics()
            .reaper_actions
            .with_label_values(&[action])
            .inc_by(n);
    }
}

/// Counts one sealed object refused on opening (tampering, a swap, a damaged copy).
pub fn integrity_failure(kind: &str) {
    (metrics().integrity_failures.with_label_values(&[kind])).inc();
}

/// Times one model's batch.
pub fn inference(model: &str, took: Duration) {
    (metrics().inference.with_label_values(&[model])).observe(took.as_secs_f64());
}

/// Brings a counter up to `total`, a count kept elsewhere (an atomic in the cache).
pub fn catch_up(counter: &IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}
