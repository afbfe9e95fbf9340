//! Portable constant-time SM4: bitsliced, 64 blocks per pass.
//!
//! Each `u64` holds one bit position of 64 blocks, so every operation is a
//! plain AND or XOR on all of them and nothing depends on secret data: no
//! table lookups, no branches. The S-box is computed rather than looked up,
//! as `post(pre(x)^254)` in the AES field (x^254 is the inverse; the affine
//! maps are the GFNI constants of the x86 paths). Rotations of the linear
//! layer are just re-indexing of bit planes.
//!
//! This path serves CPUs without AES-NI or GFNI. It needs many independent
//! blocks to be fast: one lone block costs a whole 64-block pass.

use super::{GFNI_POST_CONST, GFNI_POST_MATRIX, GFNI_PRE_CONST, GFNI_PRE_MATRIX, words};

const PASS: usize = 64;

/// Bit planes of one byte position: plane `i` holds bit `i` of each lane.
type Planes = [u64; 8];

pub(super) fn encrypt(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    let mut full = blocks.chunks_exact_mut(PASS);
    for pass in &mut full {
        encrypt_pass(rk, pass);
    }
    let rest = full.into_remainder();
    if !rest.is_empty() {
        let mut pad = [[0u8; 16]; PASS];
        pad[..rest.len()].copy_from_slice(rest);
        encrypt_pass(rk, &mut pad);
        rest.copy_from_slice(&pad[..rest.len()]);
    }
}

fn encrypt_pass(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    debug_assert_eq!(blocks.len(), PASS);
    // x[w][p]: bit p of word w of every block.
    let mut x = [[0u64; 32]; 4];
    for pair in 0..2 {
        let mut rows: [u64; 64] = std::array::from_fn(|b| {
            let w = words(&blocks[b]);
            u64::from(w[2 * pair]) | u64::from(w[2 * pair + 1]) << 32
        });
        transpose64(&mut rows);
        x[2 * pair].copy_from_slice(&rows[..32]);
        x[2 * pair + 1].copy_from_slice(&rows[32..]);
    }
    for (i, &k) in rk.iter().enumerate() {
        let (a, b, c) = (x[(i + 1) % 4], x[(i + 2) % 4], x[(i + 3) % 4]);
        let mut t: [u64; 32] =
            std::array::from_fn(|p| a[p] ^ b[p] ^ c[p] ^ u64::from((k >> p) & 1).wrapping_neg());
        for byte in t.chunks_exact_mut(8) {
            let planes: &mut Planes = byte.try_into().expect("8 planes");
            *planes = sbox(*planes);
        }
        // x ^= L(t); rotating left by r reads plane p - r.
        for (p, out) in x[i % 4].iter_mut().enumerate() {
            *out ^= t[p] ^ t[(p + 30) % 32] ^ t[(p + 22) % 32] ^ t[(p + 14) % 32] ^ t[(p + 8) % 32];
        }
    }
    // Output words in reverse order: X35, X34, X33, X32.
    let out = [x[3], x[2], x[1], x[0]];
    let mut words_out = [[0u32; 4]; PASS];
    for pair in 0..2 {
        let mut rows = [0u64; 64];
        rows[..32].copy_from_slice(&out[2 * pair]);
        rows[32..].copy_from_slice(&out[2 * pair + 1]);
        transpose64(&mut rows);
        for (w, row) in words_out.iter_mut().zip(rows) {
            w[2 * pair] = row as u32;
            w[2 * pair + 1] = (row >> 32) as u32;
        }
    }
    for (block, w) in blocks.iter_mut().zip(words_out) {
        *block = super::bytes(w);
    }
}

/// The S-box applied to 4 bytes at once, in constant time; used by the key
/// schedule, whose inputs are key material too.
pub(super) fn sbox_word(x: u32) -> u32 {
    let bytes = x.to_be_bytes();
    let planes: Planes = std::array::from_fn(|i| {
        bytes
            .iter()
            .enumerate()
            .fold(0, |acc, (lane, &b)| acc | u64::from(b >> i & 1) << lane)
    });
    let s = sbox(planes);
    let out: [u8; 4] =
        std::array::from_fn(|lane| (0..8).fold(0, |acc, i| acc | ((s[i] >> lane & 1) as u8) << i));
    u32::from_be_bytes(out)
}

/// The SM4 S-box on 64 lanes: `post(inverse(pre(x)))`.
fn sbox(x: Planes) -> Planes {
    let a = affine(&rows(GFNI_PRE_MATRIX), GFNI_PRE_CONST as u8, x);
    affine(&rows(GFNI_POST_MATRIX), GFNI_POST_CONST as u8, inverse(a))
}

/// a^254 = a^-1 in GF(2^8) (0 maps to 0), with 4 multiplications; the
/// squarings are linear maps, cheap in bit planes.
fn inverse(a: Planes) -> Planes {
    let a2 = linear(&FROBENIUS[0], a);
    let a3 = mul(a2, a);
    let a12 = linear(&FROBENIUS[1], a3);
    let a15 = mul(a12, a3);
    let a240 = linear(&FROBENIUS[3], a15);
    let a252 = mul(a240, a12);
    mul(a252, a2)
}

/// Product in GF(2^8) modulo the AES polynomial x^8 + x^4 + x^3 + x + 1.
fn mul(a: Planes, b: Planes) -> Planes {
    let mut p = [0u64; 15];
    for (i, &ai) in a.iter().enumerate() {
        for (j, &bj) in b.iter().enumerate() {
            p[i + j] ^= ai & bj;
        }
    }
    for k in (8..15).rev() {
        // x^k = x^(k-8) * (x^4 + x^3 + x + 1)
        p[k - 4] ^= p[k];
        p[k - 5] ^= p[k];
        p[k - 7] ^= p[k];
        p[k - 8] ^= p[k];
    }
    std::array::from_fn(|i| p[i])
}

/// `M·x` for a matrix given as 8 row masks (row i: which input bits feed
/// output bit i). The matrices are constants, so the masks fold away.
#[inline(always)]
fn linear(rows: &[u8; 8], x: Planes) -> Planes {
    std::array::from_fn(|i| {
        (0..8).fold(0, |acc, j| {
            acc ^ (x[j] & (u64::from(rows[i] >> j & 1)).wrapping_neg())
        })
    })
}

#[inline(always)]
fn affine(rows: &[u8; 8], constant: u8, x: Planes) -> Planes {
    let mut y = linear(rows, x);
    for (i, plane) in y.iter_mut().enumerate() {
        *plane ^= u64::from(constant >> i & 1).wrapping_neg();
    }
    y
}

/// Rows of a GFNI matrix: row i is byte 7 - i.
const fn rows(matrix: u64) -> [u8; 8] {
    let mut rows = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        rows[i] = (matrix >> (8 * (7 - i))) as u8;
        i += 1;
    }
    rows
}

/// Matrices of x -> x^(2^(k+1)) in the AES field, k = 0..4.
const FROBENIUS: [[u8; 8]; 4] = {
    let mut out = [[0u8; 8]; 4];
    let mut k = 0;
    while k < 4 {
        let mut j = 0;
        while j < 8 {
            // Image of basis element x^j: square it k + 1 times.
            let mut v = 1u8 << j;
            let mut s = 0;
            while s <= k {
                v = gf_mul(v, v);
                s += 1;
            }
            let mut i = 0;
            while i < 8 {
                out[k][i] |= ((v >> i) & 1) << j;
                i += 1;
            }
            j += 1;
        }
        k += 1;
    }
    out
};

/// Compile-time GF(2^8) product (AES polynomial), for the tables above only.
const fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut r = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            r ^= a;
        }
        let carry = a & 0x80 != 0;
        a <<= 1;
        if carry {
            a ^= 0x1b;
        }
        b >>= 1;
    }
    r
}

/// In-place transpose of a 64x64 bit matrix: afterwards bit `b` of `a[p]`
/// is what bit `p` of `a[b]` was. Swaps ever smaller off-diagonal blocks.
fn transpose64(a: &mut [u64; 64]) {
    let mut j = 32;
    let mut m: u64 = 0x0000_0000_ffff_ffff;
    while j != 0 {
        for k in 0..64 {
            if k & j == 0 {
                let t = ((a[k] >> j) ^ a[k + j]) & m;
                a[k] ^= t << j;
                a[k + j] ^= t;
            }
        }
        j >>= 1;
        m ^= m << j;
    }
}

#[cfg(test)]
mod tests {
    use super::super::SBOX;
    use super::*;

    #[test]
    fn transpose_matches_the_definition() {
        let before: [u64; 64] =
            std::array::from_fn(|i| (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut after = before;
        transpose64(&mut after);
        for (p, column) in after.iter().enumerate() {
            for (b, row) in before.iter().enumerate() {
                assert_eq!(column >> b & 1, row >> p & 1);
            }
        }
    }

    #[test]
    fn computed_sbox_matches_the_table() {
        for x in 0..=255u8 {
            let word = u32::from_be_bytes([x, x ^ 0x5a, x.wrapping_add(77), !x]);
            let expected = u32::from_be_bytes(word.to_be_bytes().map(|b| SBOX[b as usize]));
            assert_eq!(sbox_word(word), expected, "x = {x:#04x}");
        }
    }
}
