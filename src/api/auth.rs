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
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;

use super::App;
use super::caller::{Caller, Role, hash, lookup};
use super::error::ApiError;
use super::refusal::refuse_body;
use super::routes::endpoint;
use super::session;
use crate::catalog::Catalog;

/// Creates a token for `role` and stores its hash; returns the token (shown once).
pub async fn create_token(
    catalog: &Catalog,
    role: Role,
    label: Option<&str>,
    expires_at_ms: Option<i64>,
) -> Result<String, ApiError> {
    let id = crate::hex::encode(&*crate::crypto::random::<8>().map_err(ApiError::internal)?);
    let secret = crate::crypto::random::<32>().map_err(ApiError::internal)?;
    let token = format!(
        "vcw_{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_slice())
    );
    catalog
        .insert_token(&hash(&token), &id, role.as_str(), label, expires_at_ms)
        .await?;
    Ok(token)
}

/// Per-token token buckets, and a bound on the catalog lookups that unknown tokens cost.
///
/// Buckets are kept only for tokens the catalog confirmed, and by the token's hash, never
/// by the id it claims: ids are public (owners, audit actors), and a spray of one id with
/// made-up secrets must neither drain the real token's bucket nor add buckets here.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    /// Buckets of the tokens the catalog confirmed recently, by token hash.
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    /// Lookups of tokens that turned out unknown, expired or revoked, all callers
    /// together: a spray of made-up tokens costs the catalog at most this rate.
    failures: Mutex<(f64, Instant)>,
    failure_rate: f64,
}

/// Bound on the tokens remembered (the map starts over when full: only valid tokens get
/// in, so only a deployment with this many active tokens ever fills it).
const KNOWN_TOKENS: usize = 100_000;

impl RateLimiter {
    /// `rate` and `burst` per token; `failure_rate` failed lookups a second in all.
    pub fn new(rate: f64, burst: f64, failure_rate: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
            failures: Mutex::new((failure_rate * 10.0, Instant::now())),
            failure_rate,
        }
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, HashMap<String, (f64, Instant)>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one request from a confirmed token's bucket, or says how many seconds until
    /// one is free; `None` for a token not confirmed recently.
    fn take(&self, key: &str) -> Option<Result<(), u64>> {
        let mut buckets = self.buckets();
        let (tokens, last) = buckets.get_mut(key)?;
        Some(self.charge(tokens, last))
    }

    /// Remembers a token the catalog just confirmed and charges this request to it.
    fn confirm(&self, key: &str) -> Result<(), u64> {
        let mut buckets = self.buckets();
        if buckets.len() >= KNOWN_TOKENS && !buckets.contains_key(key) {
            buckets.clear();
        }
        let (tokens, last) = buckets
            .entry(key.to_string())
            .or_insert((self.burst, Instant::now()));
        self.charge(tokens, last)
    }

    /// Forgets a token the catalog no longer knows (revoked, expired).
    fn forget(&self, key: &str) {
        self.buckets().remove(key);
    }

    fn charge(&self, tokens: &mut f64, last: &mut Instant) -> Result<(), u64> {
        refill(tokens, last, Instant::now(), self.rate, self.burst);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }

    /// Whether failed lookups are over their rate now (taking one when `fail`).
    fn failures_exhausted(&self, fail: bool) -> bool {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *f;
        let rate = self.failure_rate;
        refill(tokens, last, now, rate, rate * 10.0);
        if fail {
            *tokens = (*tokens - 1.0).max(0.0);
        }
        *tokens < 1.0
    }

    /// The caller a token stands for. A token confirmed recently pays from its bucket
    /// first, so its flood never reaches the catalog; while made-up tokens fail faster
    /// than `server.auth_failures_per_second`, tokens not confirmed recently wait.
    pub async fn authenticate(&self, app: &App, token: &str) -> Result<(String, Role), ApiError> {
        let key = hash(token);
        let too_many = |retry_after| ApiError::TooMany {
            what: "rate limit exceeded",
            retry_after,
        };
        let known = match self.take(&key) {
            Some(taken) => taken.map(|()| true).map_err(too_many)?,
            None if self.failures_exhausted(false) => return Err(too_many(1)),
            None => false,
        };
        match lookup(app, &key).await {
            Ok(caller) if known => Ok(caller),
            Ok(caller) => self.confirm(&key).map(|()| caller).map_err(too_many),
            Err(ApiError::Unauthorized) => {
                self.forget(&key);
                self.failures_exhausted(true);
                Err(ApiError::Unauthorized)
            }
            Err(e) => Err(e),
        }
    }
}

/// Adds what a token bucket earned since `last`.
fn refill(tokens: &mut f64, last: &mut Instant, now: Instant, rate: f64, burst: f64) {
    *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
    *last = now;
}

/// Checks the caller against the endpoint table; a refused request's body is drained
/// (see [`super::refusal`]) so the client reads the answer.
pub async fn authorize(
    State(app): State<App>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match caller_for(&app, matched, req.method(), req.headers()).await {
        Ok(None) => Ok(next.run(req).await),
        Ok(Some(caller)) => {
            req.extensions_mut().insert(caller);
            Ok(next.run(req).await)
        }
        Err(e) => Err(refuse_body(req.into_body(), e).await),
    }
}

/// Who may make this request: `None` for a public endpoint.
async fn caller_for(
    app: &App,
    matched: Option<MatchedPath>,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<Caller>, ApiError> {
    let Some(path) = matched else {
        return Err(ApiError::NotFound("endpoint"));
    };
    let Some(ep) = endpoint(method.as_str(), path.as_str()) else {
        // A path in the table with another method: never served (the router is built
        // from the table), and the answer says what is.
        return Err(ApiError::MethodNotAllowed(
            super::routes::methods_at(path.as_str()).join(", "),
        ));
    };
    // A JSON body declared over the limit: refused here, where the refusal drains it
    // (the extractor's own 413 would close the connection on a client still sending).
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if ep.body.is_some_and(|(kind, _)| kind == "application/json")
        && declared.is_some_and(|n| n > super::JSON_LIMIT as u64)
    {
        return Err(ApiError::TooLarge(format!(
            "JSON bodies are limited to {} bytes",
            super::JSON_LIMIT
        )));
    }
    if ep.roles.is_empty() {
        return Ok(None);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let cookie = session::cookie_token(headers);
    let token = bearer.or(cookie).ok_or(ApiError::Unauthorized)?;
    let (id, role) = app.limiter.authenticate(app, token).await?;
    // The dashboard's session cookie: the same token, and a CSRF check on changes.
    if bearer.is_none() && !session::csrf_ok(method, headers, token) {
        return Err(ApiError::Csrf);
    }
    if !ep.roles.contains(&role) {
        return Err(ApiError::Forbidden);
    }
    Ok(Some(Caller { id, role }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_rate() {
        let limiter = RateLimiter::new(1.0, 2.0, 1.0);
        assert_eq!(
            limiter.take("a"),
            None,
            "no bucket until the catalog confirms"
        );
        assert_eq!(limiter.confirm("a"), Ok(()));
        assert_eq!(limiter.take("a"), Some(Ok(())));
        assert_eq!(limiter.take("a"), Some(Err(1)));
        assert_eq!(limiter.confirm("b"), Ok(()), "buckets are per token");
        limiter.forget("a");
        assert_eq!(limiter.take("a"), None, "a revoked token's bucket goes");
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
