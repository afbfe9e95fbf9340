//! Bearer tokens, roles and rate limits.
//!
//! Tokens are random (`vcw_` + 43 base64url characters, 256 bits); the catalog keeps only
//! their SHA-256, so a leaked catalog does not leak usable tokens. Each endpoint lists the
//! roles that may call it ([`super::routes::ENDPOINTS`]); one middleware checks every
//! request against that table, so no handler can forget to.

use std::collections::{HashMap, HashSet};
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

/// The public id a token carries (`vcw_<16 hex>_<secret>`), read without the catalog:
/// what rate limits key on, and what `vcw token list` and `revoke` name. Tokens made
/// before ids were part of them have none.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("vcw_")?;
    let id = rest.get(..16)?;
    let ok = id.bytes().all(|b| b.is_ascii_hexdigit()) && rest.as_bytes().get(16) == Some(&b'_');
    ok.then_some(id)
}

/// Per-token token buckets, taken before the catalog is asked about the token, and a
/// bound on the catalog lookups that unknown tokens cost.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    /// Lookups of tokens that turned out unknown, expired or revoked, all callers
    /// together: a spray of made-up tokens costs the catalog at most this rate.
    failures: Mutex<(f64, Instant)>,
    failure_rate: f64,
    /// Ids that authenticated recently: never held back by others' failures.
    known: Mutex<HashSet<String>>,
}

/// Bound on the ids remembered as known (the set starts over when full).
const KNOWN_IDS: usize = 100_000;

impl RateLimiter {
    /// `rate` and `burst` per token; `failure_rate` failed lookups a second in all.
    pub fn new(rate: f64, burst: f64, failure_rate: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
            failures: Mutex::new((failure_rate * 10.0, Instant::now())),
            failure_rate,
            known: Mutex::new(HashSet::new()),
        }
    }

    /// Takes one request from `key`'s bucket, or says how many seconds until one is free.
    fn take(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        refill(tokens, last, now, self.rate, self.burst);
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

    /// The caller a token stands for. Its bucket (by the id the token carries) is taken
    /// first, so a flood from one token never reaches the catalog; while made-up tokens
    /// fail faster than `server.auth_failures_per_second`, tokens not seen recently wait.
    pub async fn authenticate(&self, app: &App, token: &str) -> Result<(String, Role), ApiError> {
        let key = token_id(token).unwrap_or("without-id");
        let too_many = |retry_after| ApiError::TooMany {
            what: "rate limit exceeded",
            retry_after,
        };
        self.take(key).map_err(too_many)?;
        let known = || {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            known.contains(key)
        };
        if !known() && self.failures_exhausted(false) {
            return Err(too_many(1));
        }
        match lookup(app, token).await {
            Ok(caller) => {
                let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
                if known.len() >= KNOWN_IDS {
                    known.clear();
                }
                known.insert(key.to_string());
                Ok(caller)
            }
            Err(e) => {
                if matches!(e, ApiError::Unauthorized) {
                    self.failures_exhausted(true);
                }
                Err(e)
            }
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
        assert!(limiter.take("a").is_ok());
        assert!(limiter.take("a").is_ok());
        assert_eq!(limiter.take("a"), Err(1));
        assert!(limiter.take("b").is_ok(), "buckets are per token");
    }

    #[test]
    fn tokens_carry_their_public_id() {
        assert_eq!(
            token_id("vcw_0123456789abcdef_c2VjcmV0"),
            Some("0123456789abcdef")
        );
        assert_eq!(token_id("vcw_0123456789abcdeX_c2VjcmV0"), None);
        assert_eq!(token_id("vcw_0123456789abcdef"), None);
        assert_eq!(
            token_id("vcw_legacy-token-without-an-id-part-aaaaaaaa"),
            None
        );
        assert_eq!(token_id("vcw_é"), None);
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    proptest::proptest! {
        /// Any bearer string: an id only when it is the documented shape, and then the
        /// token's own 16 hex digits.
        #[test]
        fn token_ids_come_only_from_well_formed_tokens(token in "\\PC{0,60}") {
            if let Some(id) = token_id(&token) {
                let prefix = format!("vcw_{id}_");
                proptest::prop_assert!(token.starts_with(&prefix));
                proptest::prop_assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }

        #[test]
        fn made_tokens_carry_their_id(id in "[0-9a-f]{16}", secret in "[A-Za-z0-9_-]{1,43}") {
            let token = format!("vcw_{id}_{secret}");
            proptest::prop_assert_eq!(token_id(&token), Some(id.as_str()));
        }
    }
}
