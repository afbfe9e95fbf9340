//! Key material: the per-object data key and the subkeys derived from it.
//!
//! Both live in `Zeroizing` buffers so they are wiped when dropped, and their
//! `Debug` output is redacted so keys never end up in logs.

use std::fmt;

use zeroize::Zeroizing;

use super::CryptoError;
use super::primitives::{SM4_KEY_LEN, hkdf_sm3};

/// HKDF `info` prefix; binding the format version into the derivation keeps
/// keys for a future format from ever colliding with v1 keys.
const KDF_INFO_PREFIX: &[u8] = b"vcw-sealed-v1";

/// A 128-bit data key. One data key may seal many objects: each object gets
/// its own encryption and MAC keys from the nonce and object id.
pub struct DataKey(Zeroizing<[u8; SM4_KEY_LEN]>);

impl DataKey {
    /// Wraps existing key bytes (e.g. unwrapped from a KEK).
    pub fn from_bytes(bytes: [u8; SM4_KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh key from the operating system's CSPRNG.
    ///
    /// Returns an error instead of panicking because RNG failure, while rare,
    /// is an environment problem the caller should be able to report.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; SM4_KEY_LEN]);
        fill_random(key.as_mut())?;
        Ok(Self(key))
    }

    /// The raw key bytes, for wrapping under a KEK. Named `expose` so that
    /// every place key bytes leave this type is easy to find.
    pub fn expose(&self) -> &[u8; SM4_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// The two keys that protect one sealed object:
/// `K_enc || K_mac = HKDF-SM3(ikm = data key, salt = nonce, info = "vcw-sealed-v1" || object_id, L = 32)`.
///
/// Separate keys keep CTR and CMAC from ever running SM4 under the same key,
/// and mixing in the nonce and object id makes every object's keys unique even
/// when a data key is shared.
pub(crate) struct ObjectKeys {
    pub(crate) enc: Zeroizing<[u8; SM4_KEY_LEN]>,
    pub(crate) mac: Zeroizing<[u8; SM4_KEY_LEN]>,
}

impl ObjectKeys {
    pub(crate) fn derive(
        data_key: &DataKey,
        nonce: &[u8; 16],
        object_id: &[u8; 16],
    ) -> Result<Self, CryptoError> {
        let mut okm = Zeroizing::new([0u8; 2 * SM4_KEY_LEN]);
        hkdf_sm3(
            data_key.expose(),
            nonce,
            &[KDF_INFO_PREFIX, object_id],
            okm.as_mut(),
        )?;
        let mut enc = Zeroizing::new([0u8; SM4_KEY_LEN]);
        let mut mac = Zeroizing::new([0u8; SM4_KEY_LEN]);
        enc.copy_from_slice(&okm[..SM4_KEY_LEN]);
        mac.copy_from_slice(&okm[SM4_KEY_LEN..]);
        Ok(Self { enc, mac })
    }
}

impl fmt::Debug for ObjectKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObjectKeys(<redacted>)")
    }
}

/// Fills `buf` from the OS CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|e| CryptoError::Rng(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let key = DataKey::from_bytes([0xab; 16]);
        assert_eq!(format!("{key:?}"), "DataKey(<redacted>)");
        let keys = ObjectKeys::derive(&key, &[0; 16], &[0; 16]).unwrap();
        assert_eq!(format!("{keys:?}"), "ObjectKeys(<redacted>)");
    }

    #[test]
    fn generated_keys_differ() {
        let a = DataKey::generate().unwrap();
        let b = DataKey::generate().unwrap();
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn derivation_depends_on_nonce_and_object_id() {
        let key = DataKey::from_bytes([7; 16]);
        let base = ObjectKeys::derive(&key, &[1; 16], &[2; 16]).unwrap();
        let other_nonce = ObjectKeys::derive(&key, &[3; 16], &[2; 16]).unwrap();
        let other_id = ObjectKeys::derive(&key, &[1; 16], &[4; 16]).unwrap();
        assert_ne!(*base.enc, *base.mac);
        assert_ne!(*base.enc, *other_nonce.enc);
        assert_ne!(*base.enc, *other_id.enc);
        assert_ne!(*base.mac, *other_id.mac);
    }
}
