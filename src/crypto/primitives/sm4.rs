//! The SM4 block cipher (GB/T 32907-2016), encryption direction only: the
//! sealed format uses SM4 solely through CTR and CMAC, which never decrypt.
//!
//! Every path is constant-time: no table lookup or branch depends on key or
//! data. The classic T-table SM4 (OpenSSL 3.0's and RustCrypto's on x86) leaks
//! key bits through the cache to a co-resident attacker. The fast paths
//! compute the S-box with GFNI or AES-NI instructions (`x86.rs` says how);
//! `bitsliced.rs` is the portable fallback. The path is chosen once per
//! process from the CPU's features, or forced with `VCW_SM4_IMPL`.

mod bitsliced;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

use zeroize::Zeroize;

#[cfg(not(target_arch = "x86_64"))]
use self::constants::{GFNI_POST_CONST, GFNI_POST_MATRIX, GFNI_PRE_CONST, GFNI_PRE_MATRIX};
#[cfg(target_arch = "x86_64")]
use self::x86::{GFNI_POST_CONST, GFNI_POST_MATRIX, GFNI_PRE_CONST, GFNI_PRE_MATRIX};

#[cfg(not(target_arch = "x86_64"))]
mod constants {
    pub(super) const GFNI_PRE_MATRIX: u64 = 0x4c28_7db9_1a22_505d;
    pub(super) const GFNI_PRE_CONST: i32 = 0x3e;
    pub(super) const GFNI_POST_MATRIX: u64 = 0xf3ab_34a9_74a6_b589;
    pub(super) const GFNI_POST_CONST: i32 = 0xd3;
}

/// An SM4 implementation. All produce identical output; they differ in speed
/// and in which CPUs can run them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sm4Impl {
    /// Bitsliced, 64 blocks per pass; any CPU.
    Portable,
    /// S-box through AESENCLAST and nibble shuffles, 32 blocks per pass.
    AesniAvx2,
    /// S-box through GFNI affine instructions on 256-bit vectors, 32 blocks.
    GfniAvx2,
    /// GFNI on 512-bit vectors, 64 blocks per pass.
    GfniAvx512,
}

/// The environment variable that forces a path (tests and benchmarks).
pub const SM4_IMPL_ENV: &str = "VCW_SM4_IMPL";

impl Sm4Impl {
    /// Fastest first.
    pub const ALL: [Self; 4] = [
        Self::GfniAvx512,
        Self::GfniAvx2,
        Self::AesniAvx2,
        Self::Portable,
    ];

    /// The name `VCW_SM4_IMPL` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::AesniAvx2 => "aesni",
            Self::GfniAvx2 => "gfni-avx2",
            Self::GfniAvx512 => "gfni-avx512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Whether this CPU can run the path.
    pub fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Self::Portable => true,
                Self::AesniAvx2 => has!("avx2") && has!("aes"),
                Self::GfniAvx2 => has!("avx2") && has!("gfni"),
                Self::GfniAvx512 => has!("avx512f") && has!("avx512bw") && has!("gfni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Self::Portable
        }
    }

    /// Blocks one pass processes: callers with independent work (CMAC over
    /// many chunks) should offer at least this many at once.
    pub fn lanes(self) -> usize {
        match self {
            Self::Portable => 64,
            Self::AesniAvx2 | Self::GfniAvx2 => 32,
            Self::GfniAvx512 => 64,
        }
    }

    /// The path this process uses: `VCW_SM4_IMPL` if set and supported,
    /// otherwise the fastest this CPU supports. Decided once.
    pub fn selected() -> Self {
        static SELECTED: OnceLock<Sm4Impl> = OnceLock::new();
        *SELECTED.get_or_init(|| match Self::forced() {
            Ok(Some(forced)) => forced,
            Ok(None) => Self::best(),
            Err(why) => {
                tracing::warn!("{why}; using {}", Self::best().name());
                Self::best()
            }
        })
    }

    /// The fastest path this CPU supports.
    pub fn best() -> Self {
        Self::ALL
            .into_iter()
            .find(|i| i.is_supported())
            .unwrap_or(Self::Portable)
    }

    /// What `VCW_SM4_IMPL` asks for, or why it cannot be honoured.
    pub fn forced() -> Result<Option<Self>, String> {
        let Ok(name) = std::env::var(SM4_IMPL_ENV) else {
            return Ok(None);
        };
        match Self::from_name(&name) {
            Some(i) if i.is_supported() => Ok(Some(i)),
            Some(i) => Err(format!(
                "{SM4_IMPL_ENV}={} is not supported by this CPU",
                i.name()
            )),
            None => Err(format!(
                "{SM4_IMPL_ENV}={name:?} is not one of {}",
                Self::ALL.map(Self::name).join(", ")
            )),
        }
    }
}

/// Round keys for one SM4 key and the path that uses them; keys wiped on drop.
pub(crate) struct Sm4 {
    round_keys: [u32; 32],
    imp: Sm4Impl,
}

impl Sm4 {
    pub(crate) fn new(key: &[u8; 16]) -> Self {
        Self::with_impl(key, Sm4Impl::selected())
    }

    /// Uses `imp`, or the portable path if this CPU cannot run `imp`.
    pub(crate) fn with_impl(key: &[u8; 16], imp: Sm4Impl) -> Self {
        let imp = if imp.is_supported() {
            imp
        } else {
            Sm4Impl::Portable
        };
        let mut k = words(key);
        for (word, fk) in k.iter_mut().zip(FK) {
            *word ^= fk;
        }
        let mut round_keys = [0u32; 32];
        for (i, rk) in round_keys.iter_mut().enumerate() {
            let next = k[0] ^ key_round(k[1] ^ k[2] ^ k[3] ^ CK[i]);
            k = [k[1], k[2], k[3], next];
            *rk = next;
        }
        k.zeroize();
        Self { round_keys, imp }
    }

    pub(crate) fn lanes(&self) -> usize {
        self.imp.lanes()
    }

    /// Encrypts every block in place; blocks are independent (ECB), which is
    /// what CTR keystream and parallel CMAC lanes need.
    pub(crate) fn encrypt_blocks(&self, blocks: &mut [[u8; 16]]) {
        let rk = &self.round_keys;
        match self.imp {
            Sm4Impl::Portable => bitsliced::encrypt(rk, blocks),
            // SAFETY (all three): `with_impl` only keeps a SIMD path if
            // `is_supported` found the CPU features its function enables.
            #[cfg(target_arch = "x86_64")]
            Sm4Impl::AesniAvx2 => unsafe { x86::aesni_avx2(rk, blocks) },
            #[cfg(target_arch = "x86_64")]
            Sm4Impl::GfniAvx2 => unsafe { x86::gfni_avx2(rk, blocks) },
            #[cfg(target_arch = "x86_64")]
            Sm4Impl::GfniAvx512 => unsafe { x86::gfni_avx512(rk, blocks) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => bitsliced::encrypt(rk, blocks),
        }
    }

    pub(crate) fn encrypt_block(&self, block: &mut [u8; 16]) {
        self.encrypt_blocks(std::slice::from_mut(block));
    }
}

impl Drop for Sm4 {
    fn drop(&mut self) {
        self.round_keys.zeroize();
    }
}

/// Big-endian words of a block.
#[inline]
pub(crate) fn words(block: &[u8; 16]) -> [u32; 4] {
    std::array::from_fn(|i| {
        u32::from_be_bytes([
            block[4 * i],
            block[4 * i + 1],
            block[4 * i + 2],
            block[4 * i + 3],
        ])
    })
}

/// Inverse of `words`.
#[inline]
pub(crate) fn bytes(words: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Key-schedule round T'(x) = L'(tau(x)). The key is secret too, so the
/// S-box is the constant-time computed one, not the table.
fn key_round(x: u32) -> u32 {
    let b = bitsliced::sbox_word(x);
    b ^ b.rotate_left(13) ^ b.rotate_left(23)
}

/// System parameter FK.
const FK: [u32; 4] = [0xa3b1_bac6, 0x56aa_3350, 0x677d_9197, 0xb270_22dc];

/// Fixed parameters CK: byte j of CK[i] is (4i + j) * 7 mod 256.
const CK: [u32; 32] = {
    let mut ck = [0u32; 32];
    let mut i = 0;
    while i < 32 {
        let mut j = 0;
        while j < 4 {
            ck[i] = (ck[i] << 8) | (((4 * i + j) * 7) % 256) as u32;
            j += 1;
        }
        i += 1;
    }
    ck
};

/// The SM4 S-box (GB/T 32907-2016, table 1). No path looks it up; the tests
/// check the computed S-boxes against it.
#[cfg(test)]
#[rustfmt::skip]
const SBOX: [u8; 256] = [
    0xd6, 0x90, 0xe9, 0xfe, 0xcc, 0xe1, 0x3d, 0xb7, 0x16, 0xb6, 0x14, 0xc2, 0x28, 0xfb, 0x2c, 0x05,
    0x2b, 0x67, 0x9a, 0x76, 0x2a, 0xbe, 0x04, 0xc3, 0xaa, 0x44, 0x13, 0x26, 0x49, 0x86, 0x06, 0x99,
    0x9c, 0x42, 0x50, 0xf4, 0x91, 0xef, 0x98, 0x7a, 0x33, 0x54, 0x0b, 0x43, 0xed, 0xcf, 0xac, 0x62,
    0xe4, 0xb3, 0x1c, 0xa9, 0xc9, 0x08, 0xe8, 0x95, 0x80, 0xdf, 0x94, 0xfa, 0x75, 0x8f, 0x3f, 0xa6,
    0x47, 0x07, 0xa7, 0xfc, 0xf3, 0x73, 0x17, 0xba, 0x83, 0x59, 0x3c, 0x19, 0xe6, 0x85, 0x4f, 0xa8,
    0x68, 0x6b, 0x81, 0xb2, 0x71, 0x64, 0xda, 0x8b, 0xf8, 0xeb, 0x0f, 0x4b, 0x70, 0x56, 0x9d, 0x35,
    0x1e, 0x24, 0x0e, 0x5e, 0x63, 0x58, 0xd1, 0xa2, 0x25, 0x22, 0x7c, 0x3b, 0x01, 0x21, 0x78, 0x87,
    0xd4, 0x00, 0x46, 0x57, 0x9f, 0xd3, 0x27, 0x52, 0x4c, 0x36, 0x02, 0xe7, 0xa0, 0xc4, 0xc8, 0x9e,
    0xea, 0xbf, 0x8a, 0xd2, 0x40, 0xc7, 0x38, 0xb5, 0xa3, 0xf7, 0xf2, 0xce, 0xf9, 0x61, 0x15, 0xa1,
    0xe0, 0xae, 0x5d, 0xa4, 0x9b, 0x34, 0x1a, 0x55, 0xad, 0x93, 0x32, 0x30, 0xf5, 0x8c, 0xb1, 0xe3,
    0x1d, 0xf6, 0xe2, 0x2e, 0x82, 0x66, 0xca, 0x60, 0xc0, 0x29, 0x23, 0xab, 0x0d, 0x53, 0x4e, 0x6f,
    0xd5, 0xdb, 0x37, 0x45, 0xde, 0xfd, 0x8e, 0x2f, 0x03, 0xff, 0x6a, 0x72, 0x6d, 0x6c, 0x5b, 0x51,
    0x8d, 0x1b, 0xaf, 0x92, 0xbb, 0xdd, 0xbc, 0x7f, 0x11, 0xd9, 0x5c, 0x41, 0x1f, 0x10, 0x5a, 0xd8,
    0x0a, 0xc1, 0x31, 0x88, 0xa5, 0xcd, 0x7b, 0xbd, 0x2d, 0x74, 0xd0, 0x12, 0xb8, 0xe5, 0xb4, 0xb0,
    0x89, 0x69, 0x97, 0x4a, 0x0c, 0x96, 0x77, 0x7e, 0x65, 0xb9, 0xf1, 0x09, 0xc5, 0x6e, 0xc6, 0x84,
    0x18, 0xf0, 0x7d, 0xec, 0x3a, 0xdc, 0x4d, 0x20, 0x79, 0xee, 0x5f, 0x3e, 0xd7, 0xcb, 0x39, 0x48,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ck_matches_the_standard() {
        assert_eq!(CK[0], 0x0007_0e15);
        assert_eq!(CK[1], 0x1c23_2a31);
        assert_eq!(CK[31], 0x646b_7279);
    }

    /// Scalar model of GFNI's `gf2p8affineqb` (with `inverse`, of
    /// `gf2p8affineinvqb`), written from Intel's pseudocode.
    fn gf2p8affine(x: u8, matrix: u64, constant: i32, inverse: bool) -> u8 {
        let x = if inverse { aes_inverse(x) } else { x };
        (0..8).fold(constant as u8, |acc, i| {
            let row = (matrix >> (8 * (7 - i))) as u8;
            acc ^ (((row & x).count_ones() as u8) & 1) << i
        })
    }

    fn aes_mul(mut a: u8, mut b: u8) -> u8 {
        let mut r = 0;
        while b != 0 {
            if b & 1 == 1 {
                r ^= a;
            }
            a = (a << 1) ^ if a & 0x80 != 0 { 0x1b } else { 0 };
            b >>= 1;
        }
        r
    }

    fn aes_inverse(x: u8) -> u8 {
        (0..=255u8).find(|&y| aes_mul(x, y) == 1).unwrap_or(0)
    }

    #[test]
    fn gfni_constants_compute_the_sbox() {
        for x in 0..=255u8 {
            let t = gf2p8affine(x, GFNI_PRE_MATRIX, GFNI_PRE_CONST, false);
            let s = gf2p8affine(t, GFNI_POST_MATRIX, GFNI_POST_CONST, true);
            assert_eq!(s, SBOX[x as usize], "x = {x:#04x}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn aesni_nibble_tables_compute_the_sbox() {
        use super::x86::{AESNI_POST_HI, AESNI_POST_LO, AESNI_PRE_HI, AESNI_PRE_LO};
        let aes_sbox = |x: u8| {
            let v = aes_inverse(x);
            v ^ v.rotate_left(1) ^ v.rotate_left(2) ^ v.rotate_left(3) ^ v.rotate_left(4) ^ 0x63
        };
        for x in 0..=255u8 {
            let t = AESNI_PRE_LO[(x & 15) as usize] ^ AESNI_PRE_HI[(x >> 4) as usize];
            let u = aes_sbox(t);
            let s = AESNI_POST_LO[(u & 15) as usize] ^ AESNI_POST_HI[(u >> 4) as usize];
            assert_eq!(s, SBOX[x as usize], "x = {x:#04x}");
        }
    }

    fn supported() -> Vec<Sm4Impl> {
        let paths: Vec<_> = Sm4Impl::ALL
            .into_iter()
            .filter(|i| i.is_supported())
            .collect();
        eprintln!(
            "SM4 paths on this CPU: {:?}",
            paths.iter().map(|i| i.name()).collect::<Vec<_>>()
        );
        paths
    }

    /// GB/T 32907 appendix A, example 1, on every path this CPU runs, in every
    /// position of a pass (the padded tail included).
    #[test]
    fn every_path_passes_the_standard_example() {
        let key = [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54,
            0x32, 0x10,
        ];
        let expected = [
            0x68, 0x1e, 0xdf, 0x34, 0xd2, 0x06, 0x96, 0x5e, 0x86, 0xb3, 0xe9, 0x4f, 0x53, 0x6e,
            0x42, 0x46,
        ];
        for imp in supported() {
            let cipher = Sm4::with_impl(&key, imp);
            for n in [1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 130] {
                let mut blocks = vec![key; n];
                cipher.encrypt_blocks(&mut blocks);
                assert!(
                    blocks.iter().all(|b| *b == expected),
                    "{} n={n}",
                    imp.name()
                );
            }
        }
    }

    /// Every path against RustCrypto's table-based `sm4` as an independent
    /// oracle, on random keys and block counts around each pass width.
    #[test]
    fn every_path_matches_the_sm4_crate_on_random_keys() {
        use sm4::cipher::{BlockEncrypt, KeyInit};
        let mut seed = [0u8; 16];
        getrandom::fill(&mut seed).expect("random");
        let mut rng = u128::from_le_bytes(seed) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng.to_le_bytes()
        };
        for imp in supported() {
            for n in 0..=140 {
                let key = next();
                let blocks: Vec<[u8; 16]> = (0..n).map(|_| next()).collect();
                let oracle = sm4::Sm4::new(&key.into());
                let expected: Vec<[u8; 16]> = blocks
                    .iter()
                    .map(|b| {
                        let mut b = (*b).into();
                        oracle.encrypt_block(&mut b);
                        b.into()
                    })
                    .collect();
                let mut got = blocks.clone();
                Sm4::with_impl(&key, imp).encrypt_blocks(&mut got);
                assert_eq!(got, expected, "{} n={n} key={key:02x?}", imp.name());
            }
        }
    }

    #[test]
    fn forced_names_round_trip() {
        for imp in Sm4Impl::ALL {
            assert_eq!(Sm4Impl::from_name(imp.name()), Some(imp));
        }
        assert_eq!(Sm4Impl::from_name("tables"), None);
        assert!(Sm4Impl::Portable.is_supported());
    }
}
