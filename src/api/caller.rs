//! Who is calling: the role a token holds and the caller handlers see. The endpoint table
//! ([`super::routes`]) says which roles may call each endpoint; the middleware
//! ([`super::auth`]) checks it and hands handlers the [`Caller`].

use sha2::{Digest, Sha256};

use super::App;
use super::error::ApiError;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Uploads videos, submits jobs, reads and cancels its own videos.
    Uploader,
    /// Reads any video's result and plays its segments.
    Reviewer,
    /// Everything.
    Admin,
    /// Reads results and erases videos (data-subject requests).
    PrivacyOfficer,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Uploader,
        Role::Reviewer,
        Role::Admin,
        Role::PrivacyOfficer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Uploader => "uploader",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
            Role::PrivacyOfficer => "privacy-officer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The authenticated caller, available to handlers as an extension.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Short public id of the token (a prefix of its hash): recorded as the owner of
    /// what it creates, and safe to log.
    pub id: String,
    pub role: Role,
}

impl Caller {
    /// Uploaders see only what they created; other roles see everything they may call.
    pub fn may_access(&self, owner: &str) -> bool {
        self.role != Role::Uploader || self.id == owner
    }
}

/// The catalog's key for a token: its SHA-256 (the token itself is never stored).
pub fn hash(token: &str) -> String {
    crate::hex::encode(&Sha256::digest(token.as_bytes()))
}

/// The public id and role of the token whose [`hash`] is `token_hash`, or 401.
pub async fn lookup(app: &App, token_hash: &str) -> Result<(String, Role), ApiError> {
    let row = app
        .svc
        .catalog()
        .token(token_hash)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let role = Role::parse(&row.role).ok_or(ApiError::Unauthorized)?;
    Ok((row.id, role))
}
