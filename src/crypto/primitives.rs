//! The GM/T primitives vcw relies on: the SM4 block cipher (GB/T 32907), SM4
//! in counter mode, CMAC over SM4 (NIST SP 800-38B), SM3 (GB/T 32905) and HKDF
//! over SM3 (RFC 5869).
//!
//! SM4, CTR and CMAC are implemented here (`sm4.rs` says why: constant time
//! at SIMD speed); SM3 and HKDF come from RustCrypto. Everything is checked against the standards' known
//! answers and byte-for-byte against the OpenSSL CLI in the tests.

mod cmac;
mod ctr;
mod sm4;

use hkdf::Hkdf;
use sm3::{Digest, Sm3};

use self::sm4::Sm4;
pub use self::sm4::{SM4_IMPL_ENV, Sm4Impl};
use super::CryptoError;

/// SM4 key length in bytes.
pub const SM4_KEY_LEN: usize = 16;
/// SM4 block length in bytes; also the CTR counter-block and CMAC tag length.
pub const SM4_BLOCK_LEN: usize = 16;
/// SM3 digest length in bytes.
pub const SM3_LEN: usize = 32;

/// An SM4 key with its round keys expanded, for callers that use one key on
/// many chunks; expanding costs about as much as encrypting 1 KiB. Round keys
/// are wiped on drop and never printed.
pub struct Sm4Key(Sm4);

impl Sm4Key {
    /// Uses the process-wide path (`Sm4Impl::selected`).
    pub fn new(key: &[u8; SM4_KEY_LEN]) -> Self {
        Self(Sm4::new(key))
    }

    /// Uses `imp`, or the portable path where this CPU cannot run it (tests
    /// and benchmarks compare paths this way).
    pub fn with_impl(key: &[u8; SM4_KEY_LEN], imp: Sm4Impl) -> Self {
        Self(Sm4::with_impl(key, imp))
    }

    /// Blocks the chosen path processes per pass: give `cmac_many` at least
    /// this many messages to keep it busy.
    pub fn lanes(&self) -> usize {
        self.0.lanes()
    }

    /// XORs the SM4-CTR keystream that starts at `counter_block` into `data`.
    ///
    /// The whole 16-byte block is one big-endian counter, incremented per block
    /// and wrapping at 2^128, exactly like OpenSSL's `sm4-ctr`. Encryption and
    /// decryption are the same operation.
    pub fn ctr_apply(&self, counter_block: &[u8; SM4_BLOCK_LEN], data: &mut [u8]) {
        ctr::apply(&self.0, counter_block, data);
    }

    /// CMAC-SM4 over the concatenation of `parts`.
    pub fn cmac(&self, parts: &[&[u8]]) -> [u8; SM4_BLOCK_LEN] {
        cmac::mac_many(&self.0, &[parts])[0]
    }

    /// CMAC-SM4 of many messages (each the concatenation of its parts),
    /// computed side by side: far faster than one at a time.
    pub fn cmac_many(&self, messages: &[&[&[u8]]]) -> Vec<[u8; SM4_BLOCK_LEN]> {
        cmac::mac_many(&self.0, messages)
    }
}

impl std::fmt::Debug for Sm4Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm4Key(<redacted>)")
    }
}

/// Encrypts one block in place. Exposed for known-answer tests; the sealed
/// format itself only uses SM4 through CTR and CMAC.
pub fn sm4_encrypt_block(key: &[u8; SM4_KEY_LEN], block: &mut [u8; SM4_BLOCK_LEN]) {
    Sm4::new(key).encrypt_block(block);
}

/// One-shot `Sm4Key::ctr_apply`.
pub fn sm4_ctr_apply(
    key: &[u8; SM4_KEY_LEN],
    counter_block: &[u8; SM4_BLOCK_LEN],
    data: &mut [u8],
) {
    Sm4Key::new(key).ctr_apply(counter_block, data);
}

/// One-shot `Sm4Key::cmac`. Taking the message in parts lets callers
/// authenticate `prefix || data` without copying the data into a new buffer.
pub fn cmac_sm4(key: &[u8; SM4_KEY_LEN], parts: &[&[u8]]) -> [u8; SM4_BLOCK_LEN] {
    Sm4Key::new(key).cmac(parts)
}

/// SM3 digest of `data`.
pub fn sm3(data: &[u8]) -> [u8; SM3_LEN] {
    Sm3::digest(data).into()
}

/// HKDF (RFC 5869) with HMAC-SM3, filling `okm`; `info` is concatenated from
/// parts so callers need not allocate. Fails only when `okm` is longer than
/// HKDF allows (255 * 32 bytes).
pub fn hkdf_sm3(
    ikm: &[u8],
    salt: &[u8],
    info: &[&[u8]],
    okm: &mut [u8],
) -> Result<(), CryptoError> {
    Hkdf::<Sm3>::new(Some(salt), ikm)
        .expand_multi_info(info, okm)
        .map_err(|_| CryptoError::KdfOutputTooLong(okm.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GB/T 32907 appendix A key and plaintext.
    const KEY: [u8; 16] = [
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32,
        0x10,
    ];

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sm4_single_block_kat() {
        let mut block = KEY;
        sm4_encrypt_block(&KEY, &mut block);
        assert_eq!(hex(&block), "681edf34d206965e86b3e94f536e4246");
    }

    #[test]
    fn sm4_million_iterations_kat() {
        let mut block = KEY;
        for _ in 0..1_000_000 {
            sm4_encrypt_block(&KEY, &mut block);
        }
        assert_eq!(hex(&block), "595298c7c6fd271f0402f804c33d3f66");
    }

    #[test]
    fn cmac_sm4_kats() {
        assert_eq!(
            hex(&cmac_sm4(&KEY, &[])),
            "29e154322e5c7bd8ee6a25ba549b24bc"
        );
        assert_eq!(
            hex(&cmac_sm4(&KEY, &[&KEY])),
            "492950917932f9852dd47d1ba1aeb534"
        );
    }

    #[test]
    fn sm3_abc_kat() {
        assert_eq!(
            hex(&sm3(b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }

    #[test]
    fn ctr_is_an_involution_and_streams_across_blocks() {
        // Low half all ones: the counter must carry into the high half
        // (128-bit increment), as OpenSSL does.
        let mut iv = [0xffu8; 16];
        iv[..8].fill(0);
        let original: Vec<u8> = (0..77u8).collect();
        let mut data = original.clone();
        sm4_ctr_apply(&KEY, &iv, &mut data);
        assert_ne!(data, original);
        sm4_ctr_apply(&KEY, &iv, &mut data);
        assert_eq!(data, original);
    }

    /// Every path against RustCrypto's `ctr` over its `sm4` (the oracle) on a
    /// random key, counter and data for every length 0..=4096, with the
    /// counter near the 2^64 and 2^128 wraps for some.
    #[test]
    fn ctr_every_length_matches_the_oracle_on_every_path() {
        use ::ctr::cipher::{KeyIvInit, StreamCipher};
        let mut seed = [0u8; 16 + 16 + 4096];
        getrandom::fill(&mut seed).expect("random");
        let (key, rest) = seed.split_at(16);
        let (iv, data) = rest.split_at(16);
        let key: [u8; 16] = key.try_into().expect("16");
        for imp in Sm4Impl::ALL.into_iter().filter(|i| i.is_supported()) {
            let sm4 = Sm4Key::with_impl(&key, imp);
            for len in 0..=data.len() {
                let mut counter: [u8; 16] = iv.try_into().expect("16");
                match len % 3 {
                    1 => counter[8..].fill(0xff),
                    2 => counter.fill(0xff),
                    _ => {}
                }
                let mut expected = data[..len].to_vec();
                ::ctr::Ctr128BE::<::sm4::Sm4>::new(&key.into(), &counter.into())
                    .apply_keystream(&mut expected);
                let mut ours = data[..len].to_vec();
                sm4.ctr_apply(&counter, &mut ours);
                assert_eq!(ours, expected, "{} length {len}", imp.name());
            }
        }
    }

    #[test]
    fn hkdf_rejects_overlong_output() {
        let mut okm = vec![0u8; 255 * 32 + 1];
        assert!(matches!(
            hkdf_sm3(&KEY, b"salt", &[b"info"], &mut okm),
            Err(CryptoError::KdfOutputTooLong(_))
        ));
        let mut okm = vec![0u8; 255 * 32];
        assert!(hkdf_sm3(&KEY, b"salt", &[b"info"], &mut okm).is_ok());
    }
}
