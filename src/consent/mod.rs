//! Consent: who may have their video processed, for what, and until when.
//!
//! A platform's consent service issues each data subject a signed JWT (`sub` the subject,
//! `purposes`, `exp` the consent's expiry, `iat`, `jti`); vcw verifies it with the
//! issuers' public keys ([`Verifier`]) on every upload, takes the subject from it, and
//! records it in the catalog's append-only consent ledger (grant, renew, revoke, expire).
//! Playback then asks the ledger, not the token: a subject's videos play while their
//! latest consent is unexpired and not revoked. For a newcomer, `vcw serve` creates a
//! local issuer key ([`LocalIssuer`]) and `vcw consent issue` mints tokens with it.

mod issuer;
mod token;

pub use issuer::{LOCAL_ISSUER, LocalIssuer};
pub use token::{Claims, Consent, Verifier};

/// Why a consent token or the consent behind a request was refused. Every variant is the
/// caller's to fix (no retry helps) except [`ConsentError::Key`].
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error(
        "a consent token is required: send `Vcw-Consent: <JWT>` from your consent service (`vcw consent issue` mints one for the local issuer)"
    )]
    Missing,
    #[error("the consent token is not a JWT: {0}")]
    Malformed(String),
    #[error("no configured consent issuer has a {alg:?} key{}", kid.as_ref().map(|k| format!(" with kid {k:?}")).unwrap_or_default())]
    UnknownKey {
        alg: jsonwebtoken::Algorithm,
        kid: Option<String>,
    },
    #[error("the consent token's issuer is not one configured in consent.issuers")]
    UnknownIssuer,
    #[error("the consent token's signature does not verify with the issuer's key")]
    BadSignature,
    #[error(
        "the consent token expired at {at} (Unix seconds): ask the consent service for a fresh one"
    )]
    Expired { at: i64 },
    #[error("the consent token is not valid yet (issued or valid from the future)")]
    NotYetValid,
    #[error("the consent token lacks a required claim or has a wrong one: {0}")]
    Claims(String),
    #[error("the consent token does not grant the purpose {needed:?} (it grants {granted:?})")]
    MissingPurpose {
        needed: String,
        granted: Vec<String>,
    },
    #[error(
        "the subject revoked consent at {at} (Unix ms); only a token issued after that is accepted"
    )]
    Revoked { at: i64 },
    #[error("the subject's consent expired at {at} (Unix ms)")]
    Lapsed { at: i64 },
    #[error("no consent is recorded for this subject")]
    NoConsent,
    #[error("the consent token is for another subject")]
    WrongSubject,
    /// The local issuer key or a configured public key could not be read: the
    /// deployment's to fix.
    #[error("consent key: {0}")]
    Key(String),
}

impl ConsentError {
    /// 401 when the token itself is missing or invalid, 403 when it is valid but does
    /// not allow the request.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            ConsentError::MissingPurpose { .. }
                | ConsentError::Revoked { .. }
                | ConsentError::Lapsed { .. }
                | ConsentError::NoConsent
                | ConsentError::WrongSubject
        )
    }
}

/// The verifier for a process: the configured issuers, plus the local issuer when
/// `consent.local_issuer` is on. `create` (embedded mode) makes the local key on first
/// start; cluster processes only read it, and run without it when it is absent.
pub fn verifier_for(
    config: &crate::config::ConsentConfig,
    keyring: &std::path::Path,
    create: bool,
) -> Result<Verifier, ConsentError> {
    let local = if config.local_issuer {
        let path = config.local_issuer_path(keyring);
        if create {
            Some(LocalIssuer::open_or_create(&path)?)
        } else if path.exists() {
            Some(LocalIssuer::open(&path)?)
        } else {
            tracing::warn!(path = %path.display(), "no local consent issuer key: only tokens of consent.issuers are accepted");
            None
        }
    } else {
        None
    };
    Verifier::new(config, local.as_ref())
}

/// Parses a lifetime such as `30d`, `12h`, `45m`, `90s` (or plain seconds).
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with d, h, m or s"))?;
    let scale = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("{s:?}: unit must be d, h, m or s")),
    };
    n.checked_mul(scale)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?}: must be positive and not absurdly long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse_with_their_unit() {
        assert_eq!(parse_ttl("30d"), Ok(30 * 86_400));
        assert_eq!(parse_ttl("12h"), Ok(43_200));
        assert_eq!(parse_ttl("90"), Ok(90));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("3w").is_err());
        assert!(parse_ttl("-1d").is_err());
    }
}
