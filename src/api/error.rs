//! One error type for every handler, mapped to HTTP in one place. Internal details are
//! logged, never sent: clients get a status, a stable code and a short message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("this token's role may not do that")]
    Forbidden,
    #[error("a change made through a dashboard session needs its X-Vcw-Csrf header")]
    Csrf,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("the video has been erased")]
    Gone,
    #[error("the video's verdict is block: it is not served")]
    Blocked,
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("method not allowed here (allowed: {0})")]
    MethodNotAllowed(String),
    #[error("the body does not match its Upload-Checksum; nothing of it was kept")]
    ChecksumMismatch,
    #[error("range not satisfiable")]
    RangeNotSatisfiable { len: u64 },
    #[error("{what}; retry after {retry_after} s")]
    TooMany {
        what: &'static str,
        retry_after: u64,
    },
    #[error("not ready: {0}")]
    Unavailable(String),
    /// A consent token missing or invalid (401), or consent that does not allow the
    /// request (403); the message says which and what to do.
    #[error(transparent)]
    Consent(crate::consent::ConsentError),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Csrf => (StatusCode::FORBIDDEN, "csrf"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Gone => (StatusCode::GONE, "erased"),
            ApiError::Blocked => (StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, "blocked"),
            ApiError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            ApiError::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            // tus's own status for it.
            ApiError::ChecksumMismatch => (
                StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
                "checksum_mismatch",
            ),
            ApiError::TooMany { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Consent(e) if e.is_forbidden() => (StatusCode::FORBIDDEN, "consent"),
            ApiError::Consent(_) => (StatusCode::UNAUTHORIZED, "consent"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<crate::catalog::CatalogError> for ApiError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        if e.is_unavailable() {
            tracing::warn!("catalog unavailable: {e}");
            ApiError::Unavailable("the catalog database is not answering".into())
        } else {
            ApiError::internal(e)
        }
    }
}

impl From<crate::jobs::cleanup::CleanupError> for ApiError {
    fn from(e: crate::jobs::cleanup::CleanupError) -> Self {
        match e {
            crate::jobs::cleanup::CleanupError::Held(_) => ApiError::Conflict(e.to_string()),
            crate::jobs::cleanup::CleanupError::Catalog(c) => c.into(),
            e => ApiError::internal(e),
        }
    }
}

impl From<crate::consent::ConsentError> for ApiError {
    fn from(e: crate::consent::ConsentError) -> Self {
        match e {
            // A key the deployment could not read is not the caller's fault.
            crate::consent::ConsentError::Key(detail) => ApiError::Internal(detail),
            e => ApiError::Consent(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        let mut body = serde_json::json!({ "error": code, "message": self.to_string() });
        if let ApiError::Internal(detail) = &self {
            // The detail goes to the log (in the request's span); the client gets the id
            // that finds it there.
            tracing::error!("request failed: {detail}");
            if let Ok(id) = crate::catalog::REQUEST_ID.try_with(Clone::clone) {
                body["request_id"] = id.into();
            }
        }
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::TooMany { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(5u64));
            }
            ApiError::MethodNotAllowed(allow) => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, v);
                }
            }
            ApiError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"vcw\""),
                );
            }
            ApiError::RangeNotSatisfiable { len } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        response
    }
}
