//! The HTTP API (axum): uploads, jobs, results, playback, erasure; bearer-token roles on
//! every endpoint; HTTPS through rustls when a certificate is configured.
//!
//! The endpoint table in [`routes`] is the single source for routing, authorization and
//! the OpenAPI document.

mod auth;
mod caller;
mod checksum;
mod consent;
mod dashboard;
mod error;
mod health;
mod portability;
mod refusal;
mod request;
mod review;
mod routes;
mod session;
mod tls;
mod uploads;
mod videos;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};

pub use auth::create_token;
pub use caller::Role;
pub use error::ApiError;
pub use health::worker_router;
pub use routes::{ENDPOINTS, Endpoint, openapi};

use crate::service::Service;

/// Handler state: cheap to clone.
#[derive(Clone)]
pub struct App {
    svc: Arc<Service>,
    limiter: Arc<auth::RateLimiter>,
}

/// JSON bodies are small; upload bodies are streamed and limited by their handlers.
const JSON_LIMIT: usize = 64 * 1024;

/// The router with authorization, body limits, `Cache-Control: no-store`, a request id
/// (span, audit, `X-Request-Id`) and (with TLS) HSTS.
pub fn router(svc: Arc<Service>) -> Router {
    let server = &svc.config.server;
    let tls = server.tls_cert.is_some();
    let app = App {
        limiter: Arc::new(auth::RateLimiter::new(
            server.rate_per_second,
            server.rate_burst,
            server.auth_failures_per_second,
        )),
        svc,
    };
    let mut router = routes::router()
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::authorize,
        ))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        // Results, reports and decrypted video are personal data: no cache on the way
        // (a CDN, a proxy, the browser) may keep them.
        .layer(axum::middleware::map_response(
            |mut r: axum::response::Response| async move {
                r.headers_mut()
                    .entry(header::CACHE_CONTROL)
                    .or_insert(HeaderValue::from_static("no-store"));
                r
            },
        ))
        .layer(axum::middleware::from_fn(request::tag))
        .with_state(app);
    if tls {
        router = router.layer(axum::middleware::map_response(
            |mut r: axum::response::Response| async move {
                r.headers_mut().insert(
                    header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static("max-age=31536000; includeSubDomains"),
                );
                r
            },
        ));
    }
    router
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the API until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    svc: Arc<Service>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let server = svc.config.server.clone();
    let router = router(svc);
    match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => {
            let listener = tls::TlsListener::new(listener, cert, key)?;
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await?
        }
        _ => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await?
        }
    }
    Ok(())
}

/// Binds the listen address with a clear error.
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })
}
