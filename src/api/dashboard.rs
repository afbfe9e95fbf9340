//! The ops dashboard: one page, its script, style and HLS player, all embedded in the
//! binary (no CDN, nothing fetched at run time), and the figures it polls
//! (`GET /v1/dashboard`). The page talks to the same API as every client, with the
//! session cookie of [`super::session`].

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::App;
use super::error::ApiError;
use crate::metrics::metrics;

const INDEX: &str = include_str!("../../dashboard/index.html");
const SCRIPT: &str = include_str!("../../dashboard/app.js");
const STYLE: &str = include_str!("../../dashboard/style.css");
const HLS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hls.js"));

/// `GET /dashboard`: the page (it asks for a token when there is no session).
pub async fn page() -> Response {
    asset(INDEX.as_bytes(), "text/html; charset=utf-8")
}

/// `GET /dashboard/{file}`: the page's script, style and player.
pub async fn file(Path(name): Path<String>) -> Result<Response, ApiError> {
    match name.as_str() {
        "app.js" => Ok(asset(SCRIPT.as_bytes(), "text/javascript; charset=utf-8")),
        "style.css" => Ok(asset(STYLE.as_bytes(), "text/css; charset=utf-8")),
        "hls.js" => Ok(asset(HLS, "text/javascript; charset=utf-8")),
        _ => Err(ApiError::NotFound("dashboard file")),
    }
}

/// An embedded file, with a policy that lets the page run only its own scripts, load
/// media and images only from this server, and never be framed.
fn asset(body: &'static [u8], kind: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; \
             worker-src 'self' blob:; style-src 'self'; script-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// The dashboard plots the last hour, in one-minute buckets.
const WINDOW: Duration = Duration::from_secs(3600);
const BUCKET: Duration = Duration::from_secs(60);

/// `GET /v1/dashboard`: queue, throughput, verdict mix, latency, workers, cache and
/// consent events, in one document the page polls.
pub async fn overview(State(app): State<App>) -> Result<Response, ApiError> {
    let catalog = app.svc.catalog();
    let now = catalog.now().await?;
    let since = now - WINDOW.as_millis() as i64;
    let states = catalog.job_counts().await?;
    let attempts = app.svc.config.server.webhook_attempts;
    let (outbox_pending, outbox_oldest) = catalog.outbox_backlog(attempts).await?;
    let latencies = catalog.latencies(since, 1000).await?;
    let cache = app.svc.cache.as_ref().map(|c| {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &c.stats;
        let (hits, misses) = (s.hits.load(Relaxed), s.misses.load(Relaxed));
        json!({
            "bytes": c.bytes(),
            "budget_bytes": app.svc.config.server.cache_bytes,
            "hits": hits,
            "misses": misses,
            "hit_rate": (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
            "evictions": {
                "expired": s.evicted_expired.load(Relaxed),
                "size": s.evicted_size.load(Relaxed),
                "revoked": s.evicted_revoked.load(Relaxed),
            },
        })
    });
    let body = json!({
        "now_ms": now,
        "jobs": states,
        "outbox": { "pending": outbox_pending, "oldest_ms": outbox_oldest },
        "throughput": {
            "bucket_ms": BUCKET.as_millis() as i64,
            "since_ms": since,
            "buckets": catalog.throughput(since, BUCKET.as_millis() as i64).await?,
        },
        "verdicts": catalog.verdict_mix().await?.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "latency_ms": {
            "count": latencies.len(),
            "p50": percentile(&latencies, 0.5),
            "p90": percentile(&latencies, 0.9),
            "p99": percentile(&latencies, 0.99),
            "samples": latencies,
        },
        "workers": {
            "leases": catalog.leases(50).await?,
            "api_nodes": catalog.nodes().await?,
            "reaper_actions": counts(&metrics().reaper_actions),
        },
        "cache": cache,
        "consent_events": catalog.recent_consent(20).await?,
        "integrity_failures": counts(&metrics().integrity_failures),
    });
    Ok(axum::Json(body).into_response())
}

/// A labelled counter's value per label (this process's).
fn counts(counter: &prometheus::IntCounterVec) -> Value {
    use prometheus::core::Collector;
    let mut out = serde_json::Map::new();
    for family in counter.collect() {
        for m in family.get_metric() {
            let label = m.get_label().first().map(|l| l.value().to_string());
            out.insert(
                label.unwrap_or_default(),
                json!(m.get_counter().get_value() as u64),
            );
        }
    }
    out.into()
}

/// The `q` quantile of sorted values (nearest rank), or null when there are none.
fn percentile(sorted: &[i64], q: f64) -> Value {
    if sorted.is_empty() {
        return Value::Null;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    json!(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::percentile;
    use serde_json::json;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), json!(50));
        assert_eq!(percentile(&v, 0.99), json!(99));
        assert_eq!(percentile(&[7], 0.9), json!(7));
        assert_eq!(percentile(&[], 0.5), json!(null));
    }
}
