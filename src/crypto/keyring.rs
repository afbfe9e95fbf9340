//! The key hierarchy above the sealed objects: KEK -> subject key -> object data key.
//!
//! - The **keyring file** holds the key-encryption keys (KEKs), one per version, and the
//!   salt for subject hashes. It is a secret (a mounted Secret in production): vcw refuses
//!   a keyring that group or others can read.
//! - [`Kms`] is what holds the KEK; [`LocalKms`] is the keyring file, and an HSM or cloud
//!   KMS implements the same trait.
//! - Keys are wrapped with [`wrap_key`]: SM4-CTR + CMAC-SM4 under keys derived by HKDF-SM3
//!   from the wrapping key, a random nonce and a context string, so a wrapped key cannot
//!   be moved to another subject or object row.
//! - Rotation adds a KEK version and rewraps subject keys; content is never re-encrypted.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::primitives::{cmac_sm4, hkdf_sm3, sm4_ctr_apply};

/// A 16-byte key in memory, wiped on drop.
pub type Key16 = Zeroizing<[u8; 16]>;

/// nonce (16) || ciphertext (16) || tag (16)
pub const WRAPPED_LEN: usize = 48;
const WRAP_INFO: &[u8] = b"vcw-wrap-v1";
const SUBJECT_INFO: &[u8] = b"vcw-subject-v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("keyring {path}: {detail}")]
    Keyring { path: String, detail: String },
    #[error(
        "keyring {path} is readable by group or others (mode {mode:o}): run `chmod 600 {path}`"
    )]
    Permissions { path: String, mode: u32 },
    #[error("keyring {path} already exists; refusing to overwrite key material")]
    Exists { path: String },
    #[error("KEK version {0} is not in the keyring")]
    UnknownKekVersion(u32),
    #[error("wrapped key is malformed ({0} bytes, expected {WRAPPED_LEN})")]
    Malformed(usize),
    #[error("key unwrap failed: wrong wrapping key or tampered wrapped key ({context})")]
    Unwrap { context: String },
    #[error("operating system random number generator failed: {0}")]
    Rng(String),
}

/// Fresh random bytes from the OS.
pub fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, KeyError> {
    let mut out = Zeroizing::new([0u8; N]);
    getrandom::fill(out.as_mut()).map_err(|e| KeyError::Rng(e.to_string()))?;
    Ok(out)
}

fn derive(wrapping: &[u8; 16], nonce: &[u8], context: &[u8]) -> Result<(Key16, Key16), KeyError> {
    let mut okm = Zeroizing::new([0u8; 32]);
    hkdf_sm3(wrapping, nonce, &[WRAP_INFO, context], okm.as_mut())
        .map_err(|e| KeyError::Rng(e.to_string()))?;
    let mut enc = Zeroizing::new([0u8; 16]);
    let mut mac = Zeroizing::new([0u8; 16]);
    enc.copy_from_slice(&okm[..16]);
    mac.copy_from_slice(&okm[16..]);
    Ok((enc, mac))
}

/// Wraps `key` under `wrapping`, bound to `context`.
pub fn wrap_key(wrapping: &[u8; 16], key: &[u8; 16], context: &str) -> Result<Vec<u8>, KeyError> {
    let nonce = random::<16>()?;
    let (enc, mac) = derive(wrapping, nonce.as_ref(), context.as_bytes())?;
    let mut ct = *key;
    sm4_ctr_apply(&enc, &nonce, &mut ct);
    let tag = cmac_sm4(&mac, &[nonce.as_ref(), &ct]);
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&ct);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Verifies and unwraps a key made by [`wrap_key`] with the same `context`.
pub fn unwrap_key(wrapping: &[u8; 16], wrapped: &[u8], context: &str) -> Result<Key16, KeyError> {
    if wrapped.len() != WRAPPED_LEN {
        return Err(KeyError::Malformed(wrapped.len()));
    }
    let (nonce, rest) = wrapped.split_at(16);
    let (ct, tag) = rest.split_at(16);
    let (enc, mac) = derive(wrapping, nonce, context.as_bytes())?;
    let expected = cmac_sm4(&mac, &[nonce, ct]);
    if !bool::from(expected.ct_eq(tag)) {
        return Err(KeyError::Unwrap {
            context: context.to_string(),
        });
    }
    let mut key = Zeroizing::new([0u8; 16]);
    key.copy_from_slice(ct);
    let mut counter = [0u8; 16];
    counter.copy_from_slice(nonce);
    sm4_ctr_apply(&enc, &counter, key.as_mut());
    Ok(key)
}

/// Whoever holds the KEK: the keyring file here, an HSM or cloud KMS elsewhere.
pub trait Kms: Send + Sync {
    /// The KEK version new wraps use.
    fn current_version(&self) -> u32;
    /// Wraps `key` under the current KEK; returns (KEK version, wrapped bytes).
    fn wrap(&self, key: &[u8; 16], context: &str) -> Result<(u32, Vec<u8>), KeyError>;
    /// Unwraps a key wrapped under KEK `version`.
    fn unwrap(&self, version: u32, wrapped: &[u8], context: &str) -> Result<Key16, KeyError>;
    /// Keyed hash of a data-subject identifier: what the catalog and logs use instead of
    /// the raw identifier.
    fn subject_hash(&self, subject: &str) -> Result<String, KeyError>;
}

#[derive(Serialize, Deserialize)]
struct KeyringFile {
    current: u32,
    subject_salt: String,
    kek: Vec<KekEntry>,
}

#[derive(Serialize, Deserialize)]
struct KekEntry {
    version: u32,
    key: String,
    created: u64,
}

/// One KEK version.
struct Kek {
    version: u32,
    key: Key16,
    /// Unix seconds.
    created: u64,
}

/// What may change in the keyring file while vcw runs (`vcw keys rotate` or `retire`
/// from another process, a Secret updated in place): the KEK versions. The salt never
/// changes: every subject hash depends on it.
struct Ring {
    current: u32,
    keks: Vec<Kek>,
    /// Which file this was read from (inode, modification time, length): a different
    /// one means the file was replaced.
    stamp: Option<(u64, std::time::SystemTime, u64)>,
}

impl Ring {
    fn kek(&self, version: u32) -> Result<&Key16, KeyError> {
        self.keks
            .iter()
            .find(|k| k.version == version)
            .map(|k| &k.key)
            .ok_or(KeyError::UnknownKekVersion(version))
    }
}

/// A KEK version as `vcw keys` shows it (no key material).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KekVersion {
    pub version: u32,
    /// Unix seconds.
    pub created: u64,
}

/// The keyring file, loaded. Key bytes are zeroized on drop and never printed. The file
/// is read again when it changes before each wrap (so a running service wraps new
/// subject keys under the version a rotation made current, never under one about to be
/// retired) and when a key names a version not yet seen.
pub struct LocalKms {
    path: PathBuf,
    salt: Zeroizing<Vec<u8>>,
    ring: std::sync::RwLock<Ring>,
}

impl std::fmt::Debug for LocalKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LocalKms({}, current v{}, <keys redacted>)",
            self.path.display(),
            self.current_version()
        )
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn stamp_of(meta: &std::fs::Metadata) -> Option<(u64, std::time::SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.ino(), meta.modified().ok()?, meta.len()))
}

impl LocalKms {
    /// Creates a new keyring with KEK version 1 at `path` (mode 0600, never overwriting).
    pub fn init(path: &Path) -> Result<Self, KeyError> {
        if path.exists() {
            return Err(KeyError::Exists {
                path: path.display().to_string(),
            });
        }
        let kms = LocalKms {
            path: path.to_path_buf(),
            salt: Zeroizing::new(random::<32>()?.to_vec()),
            ring: std::sync::RwLock::new(Ring {
                current: 1,
                keks: vec![Kek {
                    version: 1,
                    key: random::<16>()?,
                    created: unix_now(),
                }],
                stamp: None,
            }),
        };
        kms.save(&mut kms.write())?;
        Ok(kms)
    }

    /// Loads the keyring, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let (salt, ring) = read(path)?;
        Ok(LocalKms {
            path: path.to_path_buf(),
            salt,
            ring: std::sync::RwLock::new(ring),
        })
    }

    fn read_ring(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Ring> {
        self.ring.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the file again if it was replaced since it was last read.
    fn refresh(&self) -> Result<(), KeyError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| KeyError::Keyring {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        })?;
        if stamp_of(&meta).is_some() && stamp_of(&meta) == self.read_ring().stamp {
            return Ok(());
        }
        let (salt, ring) = read(&self.path)?;
        if salt != self.salt {
            return Err(KeyError::Keyring {
                path: self.path.display().to_string(),
                detail: "subject_salt changed while running: every subject hash depends on it"
                    .into(),
            });
        }
        *self.write() = ring;
        Ok(())
    }

    /// Adds a new KEK version and makes it current (callers then rewrap subject keys).
    pub fn add_version(&self) -> Result<u32, KeyError> {
        self.refresh()?;
        let mut ring = self.write();
        let version = ring.keks.iter().map(|k| k.version).max().unwrap_or(0) + 1;
        ring.keks.push(Kek {
            version,
            key: random::<16>()?,
            created: unix_now(),
        });
        ring.current = version;
        self.save(&mut ring)?;
        Ok(version)
    }

    /// Destroys KEK `versions` (never the current one): whatever is wrapped under them,
    /// wherever a copy lives, can no longer be unwrapped. Callers check that nothing
    /// live still is.
    pub fn retire(&self, versions: &[u32]) -> Result<(), KeyError> {
        self.refresh()?;
        let mut ring = self.write();
        if versions.contains(&ring.current) {
            return Err(KeyError::Keyring {
                path: self.path.display().to_string(),
                detail: format!(
                    "KEK version {} is current: it cannot be retired",
                    ring.current
                ),
            });
        }
        ring.keks.retain(|k| !versions.contains(&k.version));
        self.save(&mut ring)
    }

    /// The KEK versions in the file, oldest first.
    pub fn versions(&self) -> Vec<KekVersion> {
        let mut v: Vec<_> = (self.read_ring().keks.iter())
            .map(|k| KekVersion {
                version: k.version,
                created: k.created,
            })
            .collect();
        v.sort_by_key(|k| k.version);
        v
    }

    /// Writes atomically: a 0600 temp file in the same directory, fsync, rename.
    fn save(&self, ring: &mut Ring) -> Result<(), KeyError> {
        let shown = self.path.display().to_string();
        let err = |e: std::io::Error| KeyError::Keyring {
            path: shown.clone(),
            detail: e.to_string(),
        };
        let file = KeyringFile {
            current: ring.current,
            subject_salt: crate::hex::encode(&self.salt),
            kek: (ring.keks.iter())
                .map(|k| KekEntry {
                    version: k.version,
                    key: crate::hex::encode(k.key.as_ref()),
                    created: k.created,
                })
                .collect(),
        };
        let body = Zeroizing::new(toml::to_string(&file).map_err(|e| KeyError::Keyring {
            path: shown.clone(),
            detail: e.to_string(),
        })?);
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        let written = f
            .write_all(b"# vcw keyring: key-encryption keys. Secret: keep mode 0600, never commit or log.\n")
            .and_then(|_| f.write_all(body.as_bytes()))
            .and_then(|_| f.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        ring.stamp = std::fs::metadata(&self.path)
            .ok()
            .as_ref()
            .and_then(stamp_of);
        Ok(())
    }
}

/// Reads and checks a keyring file: (salt, KEK versions).
fn read(path: &Path) -> Result<(Zeroizing<Vec<u8>>, Ring), KeyError> {
    let shown = path.display().to_string();
    let err = |detail: String| KeyError::Keyring {
        path: shown.clone(),
        detail,
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        err(format!(
            "{e} (create one with `vcw keys init --keyring {shown}`)"
        ))
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions { path: shown, mode });
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
    let file: KeyringFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let salt = crate::hex::decode(&file.subject_salt)
        .filter(|s| s.len() >= 16)
        .ok_or_else(|| err("subject_salt must be at least 16 hex-encoded bytes".into()))?;
    let mut keks = Vec::new();
    for entry in &file.kek {
        let bytes = crate::hex::decode(&entry.key)
            .filter(|k| k.len() == 16)
            .ok_or_else(|| {
                err(format!(
                    "KEK version {} is not 16 hex-encoded bytes",
                    entry.version
                ))
            })?;
        let mut key = Zeroizing::new([0u8; 16]);
        key.copy_from_slice(&bytes);
        keks.push(Kek {
            version: entry.version,
            key,
            created: entry.created,
        });
    }
    if !keks.iter().any(|k| k.version == file.current) {
        return Err(err(format!(
            "current KEK version {} is not in the file",
            file.current
        )));
    }
    let ring = Ring {
        current: file.current,
        keks,
        stamp: stamp_of(&meta),
    };
    Ok((Zeroizing::new(salt), ring))
}

impl Kms for LocalKms {
    fn current_version(&self) -> u32 {
        self.read_ring().current
    }

    fn wrap(&self, key: &[u8; 16], context: &str) -> Result<(u32, Vec<u8>), KeyError> {
        self.refresh()?;
        let ring = self.read_ring();
        Ok((
            ring.current,
            wrap_key(ring.kek(ring.current)?, key, context)?,
        ))
    }

    fn unwrap(&self, version: u32, wrapped: &[u8], context: &str) -> Result<Key16, KeyError> {
        let known = self.read_ring().kek(version).is_ok();
        if !known {
            self.refresh()?;
        }
        unwrap_key(self.read_ring().kek(version)?, wrapped, context)
    }

    fn subject_hash(&self, subject: &str) -> Result<String, KeyError> {
        let mut out = [0u8; 32];
        hkdf_sm3(subject.as_bytes(), &self.salt, &[SUBJECT_INFO], &mut out)
            .map_err(|e| KeyError::Rng(e.to_string()))?;
        Ok(crate::hex::encode(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_round_trips_and_binds_key_and_context() {
        let kek = [7u8; 16];
        let key = [42u8; 16];
        let w = wrap_key(&kek, &key, "subject:abc:v1").unwrap();
        assert_eq!(w.len(), WRAPPED_LEN);
        assert_eq!(*unwrap_key(&kek, &w, "subject:abc:v1").unwrap(), key);
        assert!(
            unwrap_key(&kek, &w, "subject:abd:v1").is_err(),
            "context is bound"
        );
        assert!(
            unwrap_key(&[8u8; 16], &w, "subject:abc:v1").is_err(),
            "wrong KEK"
        );
        for i in 0..w.len() {
            let mut bad = w.clone();
            bad[i] ^= 0x10;
            assert!(
                unwrap_key(&kek, &bad, "subject:abc:v1").is_err(),
                "byte {i} flipped"
            );
        }
        assert_ne!(
            w,
            wrap_key(&kek, &key, "subject:abc:v1").unwrap(),
            "random nonce"
        );
    }

    #[test]
    fn keyring_init_load_rotate_and_refuse_loose_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.toml");
        let kms = LocalKms::init(&path).unwrap();
        assert!(matches!(
            LocalKms::init(&path),
            Err(KeyError::Exists { .. })
        ));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (v, wrapped) = kms.wrap(&[1u8; 16], "ctx").unwrap();
        let loaded = LocalKms::load(&path).unwrap();
        assert_eq!(*loaded.unwrap(v, &wrapped, "ctx").unwrap(), [1u8; 16]);
        assert_eq!(
            loaded.subject_hash("alice").unwrap(),
            kms.subject_hash("alice").unwrap()
        );
        assert_ne!(
            loaded.subject_hash("alice").unwrap(),
            loaded.subject_hash("bob").unwrap()
        );
        let kek1 = crate::hex::encode(kms.read_ring().kek(1).unwrap().as_ref());
        assert!(!format!("{loaded:?}").contains(&kek1));
        assert_eq!(loaded.add_version().unwrap(), 2);
        let reloaded = LocalKms::load(&path).unwrap();
        assert_eq!(reloaded.current_version(), 2);
        assert_eq!(
            *reloaded.unwrap(1, &wrapped, "ctx").unwrap(),
            [1u8; 16],
            "old versions stay"
        );
        // Another process rotates: this one wraps under the new version from then on,
        // and unwraps what the other wrapped.
        assert_eq!(kms.current_version(), 1);
        let (v2, wrapped2) = kms.wrap(&[2u8; 16], "ctx").unwrap();
        assert_eq!(v2, 2);
        assert_eq!(*reloaded.unwrap(v2, &wrapped2, "ctx").unwrap(), [2u8; 16]);
        // Retired: gone for every reader of the file, and the current one never is.
        assert!(reloaded.retire(&[2]).is_err());
        reloaded.retire(&[1]).unwrap();
        assert_eq!(reloaded.versions().len(), 1);
        assert!(matches!(
            LocalKms::load(&path).unwrap().unwrap(1, &wrapped, "ctx"),
            Err(KeyError::UnknownKekVersion(1))
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = LocalKms::load(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
