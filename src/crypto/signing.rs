//! Ed25519 signing keys kept as PKCS#8 PEM files (mode 0600): the local consent issuer's
//! and the deployment's audit key. Zeroized on drop by ed25519-dalek.

use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use sha2::{Digest, Sha256};

fn failed(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// Reads the key at `path`.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, String> {
    let pem = std::fs::read_to_string(path).map_err(|e| failed(path, e))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| failed(path, e))
}

/// Reads the key at `path`, creating it first if there is none. Processes starting at
/// once agree on one key: each writes a temporary file and links it into place only if no
/// key is there yet.
pub fn signing_key_file(path: &Path) -> Result<SigningKey, String> {
    if !path.exists() {
        let secret = super::random::<32>().map_err(|e| failed(path, e))?;
        let pem = SigningKey::from_bytes(&secret)
            .to_pkcs8_pem(Default::default())
            .map_err(|e| failed(path, e))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| failed(path, e))?;
        // NamedTempFile is created 0600.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| failed(path, e))?;
        tmp.write_all(pem.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| failed(path, e))?;
        match tmp.persist_noclobber(path) {
            Ok(_) => tracing::info!(path = %path.display(), "created a signing key"),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(path, e.error)),
        }
    }
    read_signing_key(path)
}

/// A key's public id: hex of the first 8 bytes of its public key's SHA-256.
pub fn key_id(key: &ed25519_dalek::VerifyingKey) -> String {
    crate::hex::encode(&Sha256::digest(key.to_bytes())[..8])
}

/// The PKCS#8 DER of `key`, for libraries that take it.
pub fn pkcs8_der(key: &SigningKey) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    key.to_pkcs8_der()
        .map(|d| zeroize::Zeroizing::new(d.as_bytes().to_vec()))
        .map_err(|e| e.to_string())
}
