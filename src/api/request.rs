//! The request id: taken from `X-Request-Id` when the client (or a proxy in front) sent a
//! well-formed one, made up otherwise; echoed in the response, carried by the request's
//! tracing span and stamped on every audit record the request causes, so that one id
//! joins a client's report, the logs and the audit trail. Each request is also counted
//! and timed by route template (`vcw_http_requests_total`, `…_duration_seconds`).

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::catalog::REQUEST_ID;

const HEADER: &str = "x-request-id";

/// A client's id is kept only if it is short and plain (it ends up in logs and in the
/// audit trail): 1 to 64 of `A-Z a-z 0-9 . _ : -`.
fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// 16 random bytes in hex; a clock-derived id if the system RNG fails (ids need not be
/// secret, only distinct).
fn fresh() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_be_bytes();
    }
    crate::hex::encode(&bytes)
}

/// Middleware: runs the request in a span and a [`REQUEST_ID`] scope.
pub async fn tag(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map_or_else(fresh, str::to_string);
    // The route template, never the path itself: paths carry subject ids.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = method_label(request.method());
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let started = std::time::Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request).instrument(span))
        .await;
    let m = crate::metrics::metrics();
    let status = response.status().as_u16().to_string();
    (m.http_requests
        .with_label_values(&[method, &route, &status]))
    .inc();
    (m.http_duration.with_label_values(&[&route])).observe(started.elapsed().as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The method as a metrics label and log field: HTTP's own methods by name, any other as
/// `OTHER`. Clients choose the method (up to the request line's length), and each label
/// value would be a metrics series kept for the life of the process.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::{Method, acceptable, fresh, method_label};

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for made_up in ["X0001", "X0002", "get"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "OTHER");
        }
    }

    #[test]
    fn client_ids_are_kept_only_when_plain() {
        assert!(acceptable("req-1:retry_2.a"));
        assert!(!acceptable(""));
        assert!(!acceptable(&"a".repeat(65)));
        assert!(!acceptable("a b"));
        assert!(!acceptable("x\u{1b}[31m"));
        assert!(!acceptable("subject@example.com"));
        let (a, b) = (fresh(), fresh());
        assert_eq!(a.len(), 32);
        assert!(acceptable(&a));
        assert_ne!(a, b);
    }
}
