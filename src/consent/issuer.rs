//! The local consent issuer: an Ed25519 key `vcw serve` creates on first start, so that a
//! newcomer can mint consent tokens (`vcw consent issue`) without a consent service. A
//! production deployment configures its own issuers and sets `consent.local_issuer =
//! false`.

use std::path::Path;

use base64::Engine;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};

use super::{Claims, ConsentError};

/// The `iss` of tokens the local issuer mints.
pub const LOCAL_ISSUER: &str = "vcw-local";

/// The local issuer's signing key (zeroized on drop by ed25519-dalek).
pub struct LocalIssuer {
    key: SigningKey,
    kid: String,
}

impl std::fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIssuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl LocalIssuer {
    /// Reads the key at `path` (PKCS#8 PEM).
    pub fn open(path: &Path) -> Result<Self, ConsentError> {
        crate::crypto::read_signing_key(path)
            .map(Self::from_key)
            .map_err(ConsentError::Key)
    }

    /// Reads the key at `path`, creating it first if there is none.
    pub fn open_or_create(path: &Path) -> Result<Self, ConsentError> {
        crate::crypto::signing_key_file(path)
            .map(Self::from_key)
            .map_err(ConsentError::Key)
    }

    fn from_key(key: SigningKey) -> Self {
        let kid = crate::crypto::key_id(&key.verifying_key());
        LocalIssuer { key, kid }
    }

    /// The key id tokens carry: the first 8 bytes of the public key's SHA-256, in hex.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn decoding_key(&self) -> Result<DecodingKey, ConsentError> {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.key.verifying_key().to_bytes());
        DecodingKey::from_ed_components(&x).map_err(|e| ConsentError::Key(e.to_string()))
    }

    /// A consent token for `subject` granting `purposes` for `ttl_seconds` from now.
    pub fn issue(
        &self,
        subject: &str,
        purposes: &[String],
        ttl_seconds: u64,
    ) -> Result<String, ConsentError> {
        let now = crate::domain::clock::unix_now();
        let jti = crate::crypto::random::<16>().map_err(|e| ConsentError::Key(e.to_string()))?;
        let claims = Claims {
            iss: LOCAL_ISSUER.to_string(),
            sub: subject.to_string(),
            purposes: purposes.to_vec(),
            exp: now.saturating_add(i64::try_from(ttl_seconds).unwrap_or(i64::MAX)),
            iat: now,
            jti: crate::hex::encode(&*jti),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let der = crate::crypto::pkcs8_der(&self.key).map_err(ConsentError::Key)?;
        let encoding = EncodingKey::from_ed_der(&der);
        jsonwebtoken::encode(&header, &claims, &encoding)
            .map_err(|e| ConsentError::Key(e.to_string()))
    }
}
