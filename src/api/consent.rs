//! Consent at the API's edge: the token every upload carries (`Vcw-Consent`), the ledger
//! check before anything of a subject is served, and revocation.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::App;
use super::caller::{Caller, Role};
use super::error::ApiError;
use crate::catalog::{ConsentState, Grant};
use crate::consent::{Consent, ConsentError};
use crate::domain::audit::{Entry, subject_prefix};

/// The header a consent token travels in (the `Authorization` header holds the API
/// token).
pub const CONSENT_HEADER: &str = "vcw-consent";

/// Verifies the request's consent token for the deployment's purpose.
fn verified(app: &App, headers: &HeaderMap) -> Result<Consent, ApiError> {
    let token = headers
        .get(CONSENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ConsentError::Missing)?;
    Ok(app
        .svc
        .consent
        .verify(token, &app.svc.config.consent.purpose)?)
}

/// The keyed hash of the subject of the request's consent token, once the token is
/// verified and recorded in the ledger (refused if the subject revoked consent after the
/// token was issued). The raw subject goes no further than this.
pub async fn consenting_subject(
    app: &App,
    caller: &Caller,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let consent = verified(app, headers)?;
    let claims = &consent.claims;
    let subject_hash = app
        .svc
        .vault
        .kms_subject_hash(&claims.sub)
        .map_err(ApiError::internal)?;
    let grant = Grant::of(claims, &subject_hash, &caller.id);
    match app.svc.catalog().record_consent(&grant).await? {
        Ok(()) => Ok(subject_hash),
        Err(at) => Err(ConsentError::Revoked { at }.into()),
    }
}

/// Refuses (403) unless the subject's consent is live in the ledger: nothing of a
/// subject whose consent was revoked or has expired is served. Returns when the consent
/// expires (Unix ms).
pub async fn require_live(app: &App, subject_hash: &str) -> Result<i64, ApiError> {
    match app.svc.catalog().consent_state(subject_hash).await? {
        ConsentState::Live { expires_at } => Ok(expires_at),
        ConsentState::Revoked { at } => Err(ConsentError::Revoked { at }.into()),
        ConsentState::Lapsed { at } => Err(ConsentError::Lapsed { at }.into()),
        ConsentState::None => Err(ConsentError::NoConsent.into()),
    }
}

/// The keyed hash of `subject`, if `caller` may act on its data: a privacy officer or
/// admin may; an uploader only with a valid consent token of that same subject (the
/// platform acting for its user).
pub(super) fn subject_for(
    app: &App,
    caller: &Caller,
    subject: &str,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    if subject.is_empty() || subject.len() > 512 {
        return Err(ApiError::BadRequest(
            "the subject must be 1 to 512 bytes".into(),
        ));
    }
    if !matches!(caller.role, Role::PrivacyOfficer | Role::Admin) {
        let consent = verified(app, headers)?;
        if consent.claims.sub != subject {
            return Err(ConsentError::WrongSubject.into());
        }
    }
    app.svc
        .vault
        .kms_subject_hash(subject)
        .map_err(ApiError::internal)
}

/// `GET /v1/subjects/{subject}`: everything held about a subject (data-subject access):
/// their videos with states and verdicts, their consent ledger, and the audit records
/// about them. Reading it is itself audited.
pub async fn access(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(subject): Path<String>,
    Query(page): Query<AuditPage>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let subject_hash = subject_for(&app, &caller, &subject, &headers)?;
    let entry = Entry::about_subject(&caller.id, "subject.access", &subject_hash, "ok");
    app.svc.catalog().audit(entry).await?;
    let report = subject_report(&app, &subject_hash, page.audit_after).await?;
    Ok(axum::Json(report).into_response())
}

/// Audit records about a subject come in pages (every segment a reviewer reads is one):
/// `?audit_after=SEQ` continues after `audit_next` of the previous page.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPage {
    #[serde(default)]
    audit_after: i64,
}

/// Audit records per page, in the access document and read at a time for the archive.
pub(super) const AUDIT_PAGE: i64 = 1000;

/// Everything held about a subject, as JSON (access, and the portability archive), with
/// the page of audit records after `audit_after`.
pub(super) async fn subject_report(
    app: &App,
    subject_hash: &str,
    audit_after: i64,
) -> Result<serde_json::Value, ApiError> {
    let catalog = app.svc.catalog();
    let videos: Vec<_> = catalog
        .videos_of(subject_hash)
        .await?
        .into_iter()
        .map(|v| {
            json!({
                "id": v.id,
                "state": v.state,
                "verdict": v.verdict,
                "error": v.error,
                "created_at_ms": v.created_at,
                "updated_at_ms": v.updated_at,
                "erased": v.erased_at.is_some(),
                "report": v.report.as_deref().and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok()),
            })
        })
        .collect();
    let audit = (catalog.audit_records_about(subject_hash, audit_after, AUDIT_PAGE)).await?;
    // Where the next page starts, when this one is full.
    let audit_next = (audit.len() as i64 == AUDIT_PAGE)
        .then(|| audit.last().map(|r| r.seq))
        .flatten();
    Ok(json!({
        "subject_hash": subject_hash,
        "legal_hold": catalog.active_hold(subject_hash).await?,
        "erasure_receipt": catalog
            .erasure_receipt(subject_hash)
            .await?
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok()),
        "consent": {
            "state": format!("{:?}", catalog.consent_state(subject_hash).await?),
            "history": catalog.consent_history(subject_hash).await?,
        },
        "videos": videos,
        "audit": audit,
        "audit_next": audit_next,
    }))
}

/// `DELETE /v1/subjects/{subject}/consent`: the subject withdraws consent. A privacy
/// officer (or admin) may revoke any subject; an uploader only with a valid consent token
/// of that same subject (the platform acting for its user). Jobs of the subject stop, and
/// from the commit on nothing of the subject is served.
pub async fn revoke(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(subject): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let subject_hash = subject_for(&app, &caller, &subject, &headers)?;
    let svc = &app.svc;
    let revocation = svc
        .catalog()
        .revoke_consent(&subject_hash, &caller.id)
        .await?;
    // This node forgets at once, the others when the announcement reaches them (or, at
    // the latest, when they next read the ledger); none serves the subject meanwhile:
    // each request asks the catalog first.
    if let Some(cache) = &svc.cache {
        cache.revoke(&subject_hash);
    }
    let fanout = match &svc.fanout {
        Some(f) => Some(
            f.announce_revocation(app.svc.catalog(), &subject_hash)
                .await,
        ),
        None => None,
    };
    tracing::info!(subject = %subject_prefix(&subject_hash), by = %caller.id, jobs_cancelled = revocation.jobs_cancelled, "consent revoked");
    Ok(axum::Json(json!({
        "revoked": true,
        "at_ms": revocation.at_ms,
        "jobs_cancelled": revocation.jobs_cancelled,
        "fanout": fanout,
    }))
    .into_response())
}

/// `DELETE /v1/subjects/{subject}`: erasure. Every video of the subject is erased (jobs
/// stopped, objects shredded and deleted), consent revoked, the subject key shredded;
/// the answer is a receipt signed with the deployment's key (`vcw audit verify-receipt`).
/// 409 while a legal hold is active, saying why.
pub async fn erase(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(subject): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let subject_hash = subject_for(&app, &caller, &subject, &headers)?;
    let svc = &app.svc;
    let receipt = crate::jobs::cleanup::erase_subject(svc, &subject_hash, &caller.id).await?;
    tracing::info!(subject = %subject_prefix(&subject_hash), by = %caller.id, "subject erased");
    Ok(axum::Json(receipt).into_response())
}

/// The reason of a legal hold (`PUT /v1/subjects/{subject}/hold`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    pub reason: String,
}

/// `PUT /v1/subjects/{subject}/hold`: suspends erasure of the subject's data.
pub async fn hold(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    axum::Json(req): axum::Json<HoldRequest>,
) -> Result<Response, ApiError> {
    if req.reason.trim().is_empty() || req.reason.len() > 1000 {
        return Err(ApiError::BadRequest(
            "reason must be 1 to 1000 bytes".into(),
        ));
    }
    let hash = subject_for(&app, &caller, &subject, &headers)?;
    let set = app
        .svc
        .catalog()
        .set_hold(&hash, &req.reason, &caller.id)
        .await?;
    let hold = app.svc.catalog().active_hold(&hash).await?;
    Ok(axum::Json(json!({ "held": true, "set_now": set, "hold": hold })).into_response())
}

/// `DELETE /v1/subjects/{subject}/hold`: lets erasure proceed again.
pub async fn release(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(subject): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let hash = subject_for(&app, &caller, &subject, &headers)?;
    let released = app.svc.catalog().release_hold(&hash, &caller.id).await?;
    Ok(axum::Json(json!({ "released": released })).into_response())
}
