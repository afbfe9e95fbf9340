//! Verifying consent tokens: JWTs signed by a configured issuer (EdDSA, ES256 or RS256,
//! several keys per issuer for rotation, chosen by `kid`), checked with no leeway.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::{ConsentError, LocalIssuer};
use crate::config::{ConsentConfig, IssuerKeyConfig};

/// The claims of a consent token.
#[derive(Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The data subject (a personal identifier: never logged, only hashed).
    pub sub: String,
    pub purposes: Vec<String>,
    /// When the consent expires, Unix seconds.
    pub exp: i64,
    /// When the token was issued, Unix seconds: a token issued before a revocation is
    /// refused.
    pub iat: i64,
    /// The token's id, recorded in the consent ledger.
    pub jti: String,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("iss", &self.iss)
            .field("sub", &"<redacted>")
            .field("purposes", &self.purposes)
            .field("exp", &self.exp)
            .field("iat", &self.iat)
            .field("jti", &self.jti)
            .finish()
    }
}

/// A verified consent token.
#[derive(Clone, Debug)]
pub struct Consent {
    pub claims: Claims,
}

/// One accepted signing key of an issuer.
struct IssuerKey {
    iss: String,
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Checks consent tokens against the configured issuers' public keys.
pub struct Verifier {
    keys: Vec<IssuerKey>,
}

impl Verifier {
    /// The issuers of `config`, plus the local issuer when there is one.
    pub fn new(config: &ConsentConfig, local: Option<&LocalIssuer>) -> Result<Self, ConsentError> {
        let mut keys = Vec::new();
        for issuer in &config.issuers {
            keys.push(configured_key(issuer)?);
        }
        if let Some(local) = local {
            keys.push(IssuerKey {
                iss: super::LOCAL_ISSUER.to_string(),
                kid: Some(local.kid().to_string()),
                alg: Algorithm::EdDSA,
                key: local.decoding_key()?,
            });
        }
        Ok(Verifier { keys })
    }

    /// Verifies `token` (signature, issuer, expiry and issue time against `now`, Unix
    /// seconds, with no leeway) and that it grants `purpose`.
    pub fn verify(&self, token: &str, purpose: &str) -> Result<Consent, ConsentError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| ConsentError::Malformed(e.to_string()))?;
        let candidates: Vec<&IssuerKey> = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg)
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .collect();
        if candidates.is_empty() {
            return Err(ConsentError::UnknownKey {
                alg: header.alg,
                kid: header.kid,
            });
        }
        // Each candidate key checks the whole token; the most telling refusal is kept
        // (an expired token signed by the right key beats "bad signature" from another).
        let mut refusal = ConsentError::BadSignature;
        for key in candidates {
            let mut validation = Validation::new(key.alg);
            validation.leeway = 0;
            validation.validate_nbf = true;
            validation.set_issuer(&[&key.iss]);
            validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return check(data.claims, purpose),
                Err(e) => {
                    let this = match e.kind() {
                        ErrorKind::InvalidSignature => ConsentError::BadSignature,
                        ErrorKind::InvalidIssuer => ConsentError::UnknownIssuer,
                        ErrorKind::ExpiredSignature => ConsentError::Expired {
                            at: expiry_of(token),
                        },
                        ErrorKind::ImmatureSignature => ConsentError::NotYetValid,
                        ErrorKind::MissingRequiredClaim(c) => {
                            ConsentError::Claims(format!("{c} is missing"))
                        }
                        ErrorKind::Json(e) => ConsentError::Claims(e.to_string()),
                        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                            ConsentError::Malformed(e.to_string())
                        }
                        _ => ConsentError::BadSignature,
                    };
                    if matches!(
                        refusal,
                        ConsentError::BadSignature | ConsentError::UnknownIssuer
                    ) {
                        refusal = this;
                    }
                }
            }
        }
        Err(refusal)
    }
}

/// Checks what the signature cannot: an id, a subject, an issue time not in the future,
/// and the purpose.
fn check(claims: Claims, purpose: &str) -> Result<Consent, ConsentError> {
    if claims.jti.is_empty() || claims.sub.is_empty() {
        return Err(ConsentError::Claims("jti and sub must not be empty".into()));
    }
    if claims.iat > crate::domain::clock::unix_now() {
        return Err(ConsentError::NotYetValid);
    }
    if !claims.purposes.iter().any(|p| p == purpose) {
        return Err(ConsentError::MissingPurpose {
            needed: purpose.to_string(),
            granted: claims.purposes,
        });
    }
    Ok(Consent { claims })
}

/// The `exp` of a token whose signature verified but which has expired, for the message.
fn expiry_of(token: &str) -> i64 {
    jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
        .map(|d| d.claims.exp)
        .unwrap_or(0)
}

/// A public key from the configuration: a PEM file for the issuer's algorithm.
fn configured_key(issuer: &IssuerKeyConfig) -> Result<IssuerKey, ConsentError> {
    let alg = match issuer.alg.as_str() {
        "EdDSA" => Algorithm::EdDSA,
        "ES256" => Algorithm::ES256,
        "RS256" => Algorithm::RS256,
        other => {
            return Err(ConsentError::Key(format!(
                "issuer {}: algorithm {other:?} is not one of EdDSA, ES256, RS256",
                issuer.iss
            )));
        }
    };
    let pem = read_key(&issuer.public_key, &issuer.iss)?;
    let key = match alg {
        Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
        Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
        _ => DecodingKey::from_rsa_pem(&pem),
    }
    .map_err(|e| {
        ConsentError::Key(format!(
            "issuer {}: {} is not a {alg:?} public key in PEM: {e}",
            issuer.iss,
            issuer.public_key.display()
        ))
    })?;
    Ok(IssuerKey {
        iss: issuer.iss.clone(),
        kid: issuer.kid.clone(),
        alg,
        key,
    })
}

fn read_key(path: &Path, iss: &str) -> Result<Vec<u8>, ConsentError> {
    std::fs::read(path)
        .map_err(|e| ConsentError::Key(format!("issuer {iss}: {}: {e}", path.display())))
}
