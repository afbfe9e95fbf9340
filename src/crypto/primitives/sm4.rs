//! The SM4 block cipher (GB/T 32907-2016), encryption direction only: the
//! sealed format uses SM4 solely through CTR and CMAC, which never decrypt.
//!
//! Rounds use four 1 KiB "T-tables" that fold the S-box and the linear
//! transform L together, turning each round into four table loads and XORs.
//! This is the classic software speed-up (OpenSSL's C SM4 does the same) and
//! roughly doubles throughput over a byte S-box followed by L. Like any
//! table-driven cipher its memory access pattern depends on the data, so it is
//! not hardened against cache-timing attackers sharing the CPU.

use zeroize::Zeroize;

/// Round keys for one SM4 key; wiped on drop.
pub(crate) struct Sm4 {
    round_keys: [u32; 32],
}

/// Blocks processed side by side by `encrypt_lanes`. Independent blocks give
/// the CPU several table-lookup chains to overlap; 8 measured best here.
pub(crate) const LANES: usize = 8;

impl Sm4 {
    pub(crate) fn new(key: &[u8; 16]) -> Self {
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
        Self { round_keys }
    }

    /// Encrypts one block held as four big-endian words.
    #[inline]
    pub(crate) fn encrypt_words(&self, block: [u32; 4]) -> [u32; 4] {
        let [mut x0, mut x1, mut x2, mut x3] = block;
        for rk in self.round_keys.chunks_exact(4) {
            x0 ^= round(x1 ^ x2 ^ x3 ^ rk[0]);
            x1 ^= round(x2 ^ x3 ^ x0 ^ rk[1]);
            x2 ^= round(x3 ^ x0 ^ x1 ^ rk[2]);
            x3 ^= round(x0 ^ x1 ^ x2 ^ rk[3]);
        }
        [x3, x2, x1, x0]
    }

    /// Encrypts `LANES` independent blocks, interleaving their rounds.
    #[inline]
    pub(crate) fn encrypt_lanes(&self, blocks: &mut [[u32; 4]; LANES]) {
        // Word-major layout: each statement below is LANES independent
        // lookup chains the CPU can overlap.
        let mut x: [[u32; LANES]; 4] = std::array::from_fn(|w| blocks.map(|b| b[w]));
        for rk in self.round_keys.chunks_exact(4) {
            for j in 0..4 {
                let [a, b, c] = [x[(j + 1) % 4], x[(j + 2) % 4], x[(j + 3) % 4]];
                for lane in 0..LANES {
                    x[j][lane] ^= round(a[lane] ^ b[lane] ^ c[lane] ^ rk[j]);
                }
            }
        }
        *blocks = std::array::from_fn(|lane| [x[3][lane], x[2][lane], x[1][lane], x[0][lane]]);
    }

    pub(crate) fn encrypt_block(&self, block: &mut [u8; 16]) {
        *block = bytes(self.encrypt_words(words(block)));
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

/// Round function T(x) = L(tau(x)) via the T-tables.
#[inline(always)]
fn round(x: u32) -> u32 {
    T0[(x >> 24) as usize]
        ^ T1[(x >> 16) as u8 as usize]
        ^ T2[(x >> 8) as u8 as usize]
        ^ T3[x as u8 as usize]
}

/// Key-schedule round T'(x) = L'(tau(x)); runs 32 times per key, so the plain
/// S-box is fine here.
fn key_round(x: u32) -> u32 {
    let b = u32::from_be_bytes(x.to_be_bytes().map(|byte| SBOX[byte as usize]));
    b ^ b.rotate_left(13) ^ b.rotate_left(23)
}

/// The linear transform L of the encryption rounds.
const fn linear(b: u32) -> u32 {
    b ^ b.rotate_left(2) ^ b.rotate_left(10) ^ b.rotate_left(18) ^ b.rotate_left(24)
}

/// `L(S(x) << shift)` for every byte `x`: the contribution of one input byte
/// position to T(x), since L is linear over XOR.
const fn t_table(shift: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = linear((SBOX[i] as u32) << shift);
        i += 1;
    }
    table
}

static T0: [u32; 256] = t_table(24);
static T1: [u32; 256] = t_table(16);
static T2: [u32; 256] = t_table(8);
static T3: [u32; 256] = t_table(0);

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

/// The SM4 S-box (GB/T 32907-2016, table 1).
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

    #[test]
    fn lanes_match_single_blocks() {
        let cipher = Sm4::new(&[0x5a; 16]);
        let mut blocks: [[u32; 4]; LANES] = std::array::from_fn(|i| [i as u32, 1, 2, 3 << i]);
        let expected = blocks.map(|b| cipher.encrypt_words(b));
        cipher.encrypt_lanes(&mut blocks);
        assert_eq!(blocks, expected);
    }
}
