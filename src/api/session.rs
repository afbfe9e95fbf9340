//! Browser sessions for the dashboard: the same bearer tokens and roles as the API, kept
//! in an HttpOnly cookie so that page scripts never hold them.
//!
//! CSRF: the session cookie is `SameSite=Strict`, and every request it authenticates that
//! changes something must also carry `X-Vcw-Csrf`, a value derived from the token and
//! handed to the page in a second, readable cookie. Another site can neither read that
//! cookie nor set the header on a cross-site request, so it cannot forge an action. Login
//! takes JSON only, which a cross-site form cannot send.

use axum::Json;
use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::App;
use super::error::ApiError;

pub const SESSION_COOKIE: &str = "vcw_session";
pub const CSRF_COOKIE: &str = "vcw_csrf";
pub const CSRF_HEADER: &str = "x-vcw-csrf";
/// How long a browser keeps a session: a working day.
const MAX_AGE_SECONDS: u32 = 12 * 3600;

/// The CSRF value for a session token: unguessable without the token, stable for it.
pub fn csrf_for(token: &str) -> String {
    let digest = Sha256::digest(format!("vcw-csrf\0{token}").as_bytes());
    crate::hex::encode(&digest[..16])
}

/// The session token in the request's cookies, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .find(|t| !t.is_empty())
}

/// Whether a cookie-authenticated request may go ahead: reads always, changes only with
/// the CSRF header matching the session (compared in constant time).
pub fn csrf_ok(method: &Method, headers: &HeaderMap, token: &str) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let Some(sent) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), csrf_for(token).as_bytes()).into()
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

/// `POST /dashboard/login` (JSON `{"token": …}`): checks the token, then sets the session
/// and CSRF cookies. Answers the role, so the page shows what this login may do.
pub async fn login(
    State(app): State<App>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is read before it is judged, so the client always reads the answer.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(ApiError::Unsupported(
            "sign-in takes JSON: {\"token\": \"vcw_…\"}".into(),
        ));
    }
    let body: Login = serde_json::from_slice(&body)
        .map_err(|_| ApiError::BadRequest("expected {\"token\": \"vcw_…\"}".into()))?;
    let token = body.token.trim();
    let (id, role) = app.limiter.authenticate(&app, token).await?;
    let secure = if app.svc.config.server.tls_cert.is_some() {
        "; Secure"
    } else {
        ""
    };
    let session = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={MAX_AGE_SECONDS}{secure}"
    );
    let csrf = format!(
        "{CSRF_COOKIE}={}; Path=/; SameSite=Strict; Max-Age={MAX_AGE_SECONDS}{secure}",
        csrf_for(token)
    );
    let mut response = Json(serde_json::json!({ "id": id, "role": role.as_str() })).into_response();
    for cookie in [session, csrf] {
        let value = HeaderValue::from_str(&cookie).map_err(|_| ApiError::Unauthorized)?;
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /v1/whoami`: who this token (or session) is.
pub async fn whoami(axum::Extension(caller): axum::Extension<super::caller::Caller>) -> Response {
    Json(serde_json::json!({ "id": caller.id, "role": caller.role.as_str() })).into_response()
}

/// `POST /dashboard/logout`: the browser forgets both cookies.
pub async fn logout() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        let cookie = format!("{name}=; Path=/; Max-Age=0; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; vcw_csrf=x"));
        assert_eq!(cookie_token(&h), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("b=2;vcw_session=vcw_abc ; c=3"),
        );
        assert_eq!(cookie_token(&h), Some("vcw_abc"));
    }

    #[test]
    fn changes_need_the_matching_csrf_header() {
        let mut h = HeaderMap::new();
        assert!(csrf_ok(&Method::GET, &h, "t"));
        assert!(!csrf_ok(&Method::POST, &h, "t"));
        h.insert(
            CSRF_HEADER,
            HeaderValue::from_str(&csrf_for("other")).unwrap(),
        );
        assert!(!csrf_ok(&Method::POST, &h, "t"));
        h.insert(CSRF_HEADER, HeaderValue::from_str(&csrf_for("t")).unwrap());
        assert!(csrf_ok(&Method::POST, &h, "t"));
        assert!(csrf_ok(&Method::DELETE, &h, "t"));
    }

    proptest::proptest! {
        /// Any Cookie header: a session token is only ever what follows `vcw_session=`.
        #[test]
        fn any_cookie_header_is_safe(value in "[ -~]{0,120}", token in "[A-Za-z0-9_-]{1,40}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.append(header::COOKIE, v);
                if let Some(t) = cookie_token(&h) {
                    let pair = format!("{SESSION_COOKIE}={t}");
                    proptest::prop_assert!(value.contains(&pair));
                }
                // Among other cookies, ours is found.
                let mut h = HeaderMap::new();
                let ours = format!("a=b; {SESSION_COOKIE}={token}; c=d");
                h.append(header::COOKIE, HeaderValue::from_str(&ours).unwrap());
                proptest::prop_assert_eq!(cookie_token(&h), Some(token.as_str()));
            }
        }
    }
}
