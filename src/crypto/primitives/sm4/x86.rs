//! SM4 on x86-64 vector units, without tables.
//!
//! The SM4 S-box is `A·inv(A·x + c) + c` with the inversion taken in SM4's own
//! field (x^8+x^7+x^6+x^5+x^4+x^2+1). That field is isomorphic to the AES field,
//! so folding the isomorphism into the two affine maps turns the S-box into
//! "affine, AES-field inverse, affine", which the CPU computes for every byte
//! at once: GFNI has both steps as instructions, and AES-NI's last round
//! (SubBytes = inverse + AES's affine map) is the inverse once the affine maps
//! are applied with 16-entry nibble shuffles. `scripts/sm4_sbox_constants.py`
//! derives the constants; the tests check them against the S-box table.
//!
//! Sixteen (AVX-512) or eight (AVX2) blocks form a group, transposed so that
//! one vector holds the same word of every block; four groups are kept in
//! flight so the dependent steps of one round hide each other's latency.

use core::arch::x86_64::*;

/// GFNI matrix (row for output bit i in byte 7-i) and constant of the map
/// `x -> phi(A·x + c)` into the AES field.
pub(super) const GFNI_PRE_MATRIX: u64 = 0x4c28_7db9_1a22_505d;
pub(super) const GFNI_PRE_CONST: i32 = 0x3e;
/// GFNI matrix and constant of `y -> A·phi^-1(y) + c`, applied to the inverse.
pub(super) const GFNI_POST_MATRIX: u64 = 0xf3ab_34a9_74a6_b589;
pub(super) const GFNI_POST_CONST: i32 = 0xd3;

/// The same pre-map as nibble tables: `pre(x) = LO[x & 15] ^ HI[x >> 4]`.
pub(super) const AESNI_PRE_LO: [u8; 16] =
    *b"\x00\x8c\x30\xbc\x85\x09\xb5\x39\x9f\x13\xaf\x23\x1a\x96\x2a\xa6";
pub(super) const AESNI_PRE_HI: [u8; 16] =
    *b"\x3e\xe2\x10\xcc\xfb\x27\xd5\x09\x36\xea\x18\xc4\xf3\x2f\xdd\x01";
/// Post-map from AES SubBytes' output (which already carries AES's affine
/// map) to the SM4 S-box output.
pub(super) const AESNI_POST_LO: [u8; 16] =
    *b"\x00\xb8\xca\x72\x3e\x86\xf4\x4c\x67\xdf\xad\x15\x59\xe1\x93\x2b";
pub(super) const AESNI_POST_HI: [u8; 16] =
    *b"\x6c\x8c\x3c\xdc\xf1\x11\xa1\x41\xac\x4c\xfc\x1c\x31\xd1\x61\x81";

/// Byte order within each 32-bit word reversed: SM4 words are big-endian.
const BSWAP32: [u8; 16] = [3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12];
/// 32-bit rotations by whole bytes, as byte shuffles.
const ROL8: [u8; 16] = [3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14];
const ROL16: [u8; 16] = [2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13];
const ROL24: [u8; 16] = [1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12];
/// AES InvShiftRows as a byte shuffle: applied before AESENCLAST it cancels
/// the ShiftRows that instruction performs, leaving SubBytes alone.
const INV_SHIFT_ROWS: [u8; 16] = [0, 13, 10, 7, 4, 1, 14, 11, 8, 5, 2, 15, 12, 9, 6, 3];

/// Groups in flight per pass. Four independent groups keep both vector
/// pipes busy through each round's dependent steps (measured: 1.3x the
/// throughput of two, on AVX2 as on AVX-512).
const GROUPS: usize = 4;

/// Runs `$pass::<GROUPS>` over the blocks `GROUPS` groups at a time (a group
/// is `$group` blocks), then the remainder padded to the narrowest pass it
/// fits: one group keeps a lone block (serial CMAC) at a quarter of the cost,
/// and two keep the 32 CMAC lanes of a batch split over two cores from paying
/// for four. Padding depends only on the length, never on secret data.
macro_rules! drive {
    ($blocks:expr, $group:expr, $pass:ident, $rk:expr) => {{
        let blocks: &mut [[u8; 16]] = $blocks;
        let mut full = blocks.chunks_exact_mut(GROUPS * $group);
        for pass in &mut full {
            $pass::<GROUPS>($rk, pass);
        }
        let rest = full.into_remainder();
        if !rest.is_empty() {
            let mut pad = [[0u8; 16]; GROUPS * $group];
            pad[..rest.len()].copy_from_slice(rest);
            if rest.len() <= $group {
                $pass::<1>($rk, &mut pad[..$group]);
            } else if rest.len() <= 2 * $group {
                $pass::<2>($rk, &mut pad[..2 * $group]);
            } else {
                $pass::<GROUPS>($rk, &mut pad);
            }
            rest.copy_from_slice(&pad[..rest.len()]);
        }
    }};
}

/// 4x4 transpose of 32-bit words within each 128-bit lane; its own inverse.
macro_rules! transpose {
    ($lo32:ident, $hi32:ident, $lo64:ident, $hi64:ident, [$r0:expr, $r1:expr, $r2:expr, $r3:expr]) => {{
        let (t0, t1) = ($lo32($r0, $r1), $hi32($r0, $r1));
        let (t2, t3) = ($lo32($r2, $r3), $hi32($r2, $r3));
        [$lo64(t0, t2), $hi64(t0, t2), $lo64(t1, t3), $hi64(t1, t3)]
    }};
}

/// The 32 rounds over `G` transposed groups: `$round(x, a, b, c, rk)` returns
/// the new `x`. Written out four at a time so every register index is a
/// constant and the state never leaves registers.
macro_rules! rounds {
    ($x:expr, $rk:expr, $round:ident) => {{
        for k in $rk.chunks_exact(4) {
            for g in $x.iter_mut() {
                g[0] = $round(g[0], g[1], g[2], g[3], k[0]);
            }
            for g in $x.iter_mut() {
                g[1] = $round(g[1], g[2], g[3], g[0], k[1]);
            }
            for g in $x.iter_mut() {
                g[2] = $round(g[2], g[3], g[0], g[1], k[2]);
            }
            for g in $x.iter_mut() {
                g[3] = $round(g[3], g[0], g[1], g[2], k[3]);
            }
        }
    }};
}

// ---------------------------------------------------------------- GFNI + AVX-512

/// Blocks per AVX-512 group: four 512-bit vectors of four blocks.
const AVX512_GROUP: usize = 16;

#[target_feature(enable = "avx512f,avx512bw,gfni")]
pub(super) fn gfni_avx512(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    drive!(blocks, AVX512_GROUP, avx512_pass, rk);
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,gfni")]
fn avx512_pass<const G: usize>(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    assert_eq!(blocks.len(), G * AVX512_GROUP);
    let bswap = _mm512_broadcast_i32x4(load128(&BSWAP32));
    let ptr = blocks.as_mut_ptr().cast::<__m512i>();
    let mut x: [[__m512i; 4]; G] = std::array::from_fn(|g| {
        // SAFETY: `blocks` is G groups of four 64-byte vectors; unaligned loads.
        let r: [__m512i; 4] = std::array::from_fn(|i| unsafe {
            _mm512_shuffle_epi8(_mm512_loadu_si512(ptr.add(4 * g + i)), bswap)
        });
        transpose!(
            _mm512_unpacklo_epi32,
            _mm512_unpackhi_epi32,
            _mm512_unpacklo_epi64,
            _mm512_unpackhi_epi64,
            [r[0], r[1], r[2], r[3]]
        )
    });
    let pre = _mm512_set1_epi64(GFNI_PRE_MATRIX as i64);
    let post = _mm512_set1_epi64(GFNI_POST_MATRIX as i64);
    let round = |x: __m512i, a: __m512i, b: __m512i, c: __m512i, k: u32| {
        let t = _mm512_xor_si512(
            _mm512_ternarylogic_epi32::<0x96>(a, b, c),
            _mm512_set1_epi32(k as i32),
        );
        let t = _mm512_gf2p8affine_epi64_epi8::<GFNI_PRE_CONST>(t, pre);
        let t = _mm512_gf2p8affineinv_epi64_epi8::<GFNI_POST_CONST>(t, post);
        let l = _mm512_ternarylogic_epi32::<0x96>(
            t,
            _mm512_rol_epi32::<2>(t),
            _mm512_rol_epi32::<10>(t),
        );
        let r = _mm512_ternarylogic_epi32::<0x96>(
            _mm512_rol_epi32::<18>(t),
            _mm512_rol_epi32::<24>(t),
            x,
        );
        _mm512_xor_si512(l, r)
    };
    rounds!(x, rk, round);
    for (g, x) in x.into_iter().enumerate() {
        let r = transpose!(
            _mm512_unpacklo_epi32,
            _mm512_unpackhi_epi32,
            _mm512_unpacklo_epi64,
            _mm512_unpackhi_epi64,
            [x[3], x[2], x[1], x[0]]
        );
        for (i, r) in r.into_iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe { _mm512_storeu_si512(ptr.add(4 * g + i), _mm512_shuffle_epi8(r, bswap)) };
        }
    }
}

// ---------------------------------------------------------------- AVX2 helpers

/// Blocks per AVX2 group: four 256-bit vectors of two blocks.
const AVX2_GROUP: usize = 8;

#[inline]
#[target_feature(enable = "avx2")]
fn load128(bytes: &[u8; 16]) -> __m128i {
    // SAFETY: 16 readable bytes, unaligned load.
    unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn splat(bytes: &[u8; 16]) -> __m256i {
    _mm256_broadcastsi128_si256(load128(bytes))
}

/// Loads `G` groups of blocks, each transposed into four vectors.
#[inline]
#[target_feature(enable = "avx2")]
fn avx2_load<const G: usize>(blocks: &[[u8; 16]]) -> [[__m256i; 4]; G] {
    assert_eq!(blocks.len(), G * AVX2_GROUP);
    let bswap = splat(&BSWAP32);
    let ptr = blocks.as_ptr().cast::<__m256i>();
    std::array::from_fn(|g| {
        // SAFETY: G groups of four 32-byte vectors; unaligned loads.
        let r: [__m256i; 4] = std::array::from_fn(|i| unsafe {
            _mm256_shuffle_epi8(_mm256_loadu_si256(ptr.add(4 * g + i)), bswap)
        });
        transpose!(
            _mm256_unpacklo_epi32,
            _mm256_unpackhi_epi32,
            _mm256_unpacklo_epi64,
            _mm256_unpackhi_epi64,
            [r[0], r[1], r[2], r[3]]
        )
    })
}

/// Inverse of `avx2_load`, including SM4's final word reversal.
#[inline]
#[target_feature(enable = "avx2")]
fn avx2_store<const G: usize>(x: [[__m256i; 4]; G], blocks: &mut [[u8; 16]]) {
    let bswap = splat(&BSWAP32);
    let ptr = blocks.as_mut_ptr().cast::<__m256i>();
    for (g, x) in x.into_iter().enumerate() {
        let r = transpose!(
            _mm256_unpacklo_epi32,
            _mm256_unpackhi_epi32,
            _mm256_unpacklo_epi64,
            _mm256_unpackhi_epi64,
            [x[3], x[2], x[1], x[0]]
        );
        for (i, r) in r.into_iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe { _mm256_storeu_si256(ptr.add(4 * g + i), _mm256_shuffle_epi8(r, bswap)) };
        }
    }
}

/// `x ^ L(s)` with L(s) = s ^ s<<<2 ^ s<<<10 ^ s<<<18 ^ s<<<24, computed as
/// s ^ s<<<24 ^ (s ^ s<<<8 ^ s<<<16)<<<2: byte rotations are shuffles, and
/// only one rotation needs shifts.
#[inline]
#[target_feature(enable = "avx2")]
fn avx2_linear(x: __m256i, s: __m256i) -> __m256i {
    let u = _mm256_xor_si256(
        s,
        _mm256_xor_si256(
            _mm256_shuffle_epi8(s, splat(&ROL8)),
            _mm256_shuffle_epi8(s, splat(&ROL16)),
        ),
    );
    let u = _mm256_or_si256(_mm256_slli_epi32::<2>(u), _mm256_srli_epi32::<30>(u));
    _mm256_xor_si256(
        _mm256_xor_si256(x, s),
        _mm256_xor_si256(_mm256_shuffle_epi8(s, splat(&ROL24)), u),
    )
}

#[inline]
#[target_feature(enable = "avx2")]
fn avx2_round_input(a: __m256i, b: __m256i, c: __m256i, k: u32) -> __m256i {
    _mm256_xor_si256(
        _mm256_xor_si256(a, b),
        _mm256_xor_si256(c, _mm256_set1_epi32(k as i32)),
    )
}

// ---------------------------------------------------------------- GFNI + AVX2

#[target_feature(enable = "avx2,gfni")]
pub(super) fn gfni_avx2(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    drive!(blocks, AVX2_GROUP, gfni_avx2_pass, rk);
}

#[inline]
#[target_feature(enable = "avx2,gfni")]
fn gfni_avx2_pass<const G: usize>(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    let mut x = avx2_load::<G>(blocks);
    let pre = _mm256_set1_epi64x(GFNI_PRE_MATRIX as i64);
    let post = _mm256_set1_epi64x(GFNI_POST_MATRIX as i64);
    let round = |x: __m256i, a: __m256i, b: __m256i, c: __m256i, k: u32| {
        let t = avx2_round_input(a, b, c, k);
        let t = _mm256_gf2p8affine_epi64_epi8::<GFNI_PRE_CONST>(t, pre);
        let t = _mm256_gf2p8affineinv_epi64_epi8::<GFNI_POST_CONST>(t, post);
        avx2_linear(x, t)
    };
    rounds!(x, rk, round);
    avx2_store(x, blocks);
}

// ---------------------------------------------------------------- AES-NI + AVX2

#[target_feature(enable = "avx2,aes")]
pub(super) fn aesni_avx2(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    drive!(blocks, AVX2_GROUP, aesni_avx2_pass, rk);
}

/// An affine map applied bytewise through two 16-entry shuffles.
#[inline]
#[target_feature(enable = "avx2")]
fn nibble_map(x: __m256i, lo: __m256i, hi: __m256i) -> __m256i {
    let mask = _mm256_set1_epi8(0x0f);
    _mm256_xor_si256(
        _mm256_shuffle_epi8(lo, _mm256_and_si256(x, mask)),
        _mm256_shuffle_epi8(hi, _mm256_and_si256(_mm256_srli_epi16::<4>(x), mask)),
    )
}

#[inline]
#[target_feature(enable = "avx2,aes")]
fn aesni_avx2_pass<const G: usize>(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    let mut x = avx2_load::<G>(blocks);
    let (pre_lo, pre_hi) = (splat(&AESNI_PRE_LO), splat(&AESNI_PRE_HI));
    let (post_lo, post_hi) = (splat(&AESNI_POST_LO), splat(&AESNI_POST_HI));
    let inv_shift_rows = splat(&INV_SHIFT_ROWS);
    let zero = _mm_setzero_si128();
    let round = |x: __m256i, a: __m256i, b: __m256i, c: __m256i, k: u32| {
        let t = avx2_round_input(a, b, c, k);
        let t = _mm256_shuffle_epi8(nibble_map(t, pre_lo, pre_hi), inv_shift_rows);
        // AES-NI without VAES works on 128 bits: one instruction per half.
        let lo = _mm_aesenclast_si128(_mm256_castsi256_si128(t), zero);
        let hi = _mm_aesenclast_si128(_mm256_extracti128_si256::<1>(t), zero);
        let t = _mm256_set_m128i(hi, lo);
        avx2_linear(x, nibble_map(t, post_lo, post_hi))
    };
    rounds!(x, rk, round);
    avx2_store(x, blocks);
}
