//! Bearer tokens, roles and rate limits.
//!
//! Tokens are random (`vcw_` + 43 base64url characters, 256 bits); the catalog keeps only
//! their SHA-256, so a leaked catalog does not leak usable tokens. Each endpoint lists the
//! roles that may call it ([`super::routes::ENDPOINTS`]); one middleware checks every
//! request against that table, so no handler can forget to.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;

use super::App;
use super::caller::{Caller, Role, hash, lookup};
use super::error::ApiError;
use super::routes::endpoint;
use super::session;
use crate::catalog::Catalog;

/// Creates a token for `role` and stores its hash; returns the token (shown once).
pub async fn create_token(
    catalog: &Catalog,
    role: Role,
    label: Option<&str>,
) -> Result<String, ApiError> {
    let secret = crate::crypto::random::<32>().map_err(ApiError::internal)?;
    let token = format!(
        "vcw_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_slice())
    );
    let h = hash(&token);
    catalog
        .insert_token(&h, &h[..16], role.as_str(), label)
        .await?;
    Ok(token)
}

/// Per-token token buckets.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket, or says how many seconds until one is free.
    fn take(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// Authenticates and authorizes every request against the endpoint table.
pub async fn authorize(
    State(app): State<App>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(ep) = matched.and_then(|m| endpoint(req.method().as_str(), m.as_str())) else {
        // Not in the table: never served (the router is built from the table).
        return Err(ApiError::NotFound("endpoint"));
    };
    if ep.roles.is_empty() {
        return Ok(next.run(req).await);
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let (id, role) = match bearer {
        Some(token) => lookup(&app, token).await?,
        // The dashboard's session cookie: the same token, and a CSRF check on changes.
        None => {
            let token = session::cookie_token(req.headers()).ok_or(ApiError::Unauthorized)?;
            let caller = lookup(&app, token).await?;
            if !session::csrf_ok(req.method(), req.headers(), token) {
                return Err(ApiError::Csrf);
            }
            caller
        }
    };
    if !ep.roles.contains(&role) {
        return Err(ApiError::Forbidden);
    }
    app.limiter
        .take(&id)
        .map_err(|retry_after| ApiError::TooMany {
            what: "rate limit exceeded",
            retry_after,
        })?;
    req.extensions_mut().insert(Caller { id, role });
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_rate() {
        let limiter = RateLimiter::new(1.0, 2.0);
        assert!(limiter.take("a").is_ok());
        assert!(limiter.take("a").is_ok());
        assert_eq!(limiter.take("a"), Err(1));
        assert!(limiter.take("b").is_ok(), "buckets are per token");
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
