//! Prometheus metrics: what an SRE alerts on and the dashboard plots. One registry per
//! process, written to from wherever the event happens (a request, a job, a seal) and
//! read at `GET /metrics` in the text exposition format (`promtool check metrics`
//! clean). Labels carry routes, states, models and causes: never ids or subjects.
//!
//! Figures that live in the catalog (jobs by state, the outbox) are refreshed every few
//! seconds by [`refresh`], not at scrape time, so scraping costs no query however often
//! it comes.

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

/// Times one model's batch.
pub fn inference(model: &str, took: Duration) {
    (metrics().inference.with_label_values(&[model])).observe(took.as_secs_f64());
}

/// Brings a counter up to `total`, a count kept elsewhere (an atomic in the cache).
fn catch_up(counter: &IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

/// Refreshes what lives elsewhere: jobs by state and the outbox (catalog), and the
/// segment cache's counters.
pub async fn refresh(svc: &crate::service::Service) {
    let m = metrics();
    match svc.catalog().job_counts().await {
        Ok(counts) => {
            for state in crate::domain::JobState::ALL {
                let n = counts.get(state.as_str()).copied().unwrap_or(0);
                m.jobs.with_label_values(&[state.as_str()]).set(n);
            }
        }
        Err(e) => tracing::warn!("metrics: job counts: {e}"),
    }
    let attempts = svc.config.server.webhook_attempts;
    match svc.catalog().outbox_backlog(attempts).await {
        Ok((pending, oldest_ms)) => {
            m.outbox_pending.set(pending);
            let now = crate::domain::clock::now_ms();
            let lag = oldest_ms.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
            m.outbox_lag.set(lag);
        }
        Err(e) => tracing::warn!("metrics: outbox: {e}"),
    }
    if let Some(cache) = &svc.cache {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &cache.stats;
        let requests = |r: &str| m.cache_requests.with_label_values(&[r]);
        catch_up(&requests("hit"), s.hits.load(Relaxed));
        catch_up(&requests("miss"), s.misses.load(Relaxed));
        let evictions = |c: &str| m.cache_evictions.with_label_values(&[c]);
        catch_up(&evictions("expired"), s.evicted_expired.load(Relaxed));
        catch_up(&evictions("size"), s.evicted_size.load(Relaxed));
        catch_up(&evictions("revoked"), s.evicted_revoked.load(Relaxed));
        m.cache_bytes.set(cache.bytes() as i64);
    }
}

/// Refreshes every `every` until `stop`.
pub async fn run(
    svc: std::sync::Arc<crate::service::Service>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        refresh(&svc).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}
