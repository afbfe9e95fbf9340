//! Counter mode over SM4, with the OpenSSL counter convention.

use zeroize::Zeroize;

use super::SM4_BLOCK_LEN;
use super::sm4::Sm4;

/// Keystream blocks made per step: a multiple of every path's pass width, and
/// small enough (1 KiB) to stay in L1 next to the data.
const STEP: usize = 64;

/// XORs the keystream starting at `counter_block` into `data`. The whole block
/// is one big-endian counter that wraps at 2^128, as in OpenSSL's `sm4-ctr`.
pub(super) fn apply(cipher: &Sm4, counter_block: &[u8; SM4_BLOCK_LEN], data: &mut [u8]) {
    let mut counter = u128::from_be_bytes(*counter_block);
    let mut keystream = [[0u8; SM4_BLOCK_LEN]; STEP];
    for piece in data.chunks_mut(STEP * SM4_BLOCK_LEN) {
        let blocks = &mut keystream[..piece.len().div_ceil(SM4_BLOCK_LEN)];
        for (i, block) in blocks.iter_mut().enumerate() {
            *block = counter.wrapping_add(i as u128).to_be_bytes();
        }
        cipher.encrypt_blocks(blocks);
        counter = counter.wrapping_add(blocks.len() as u128);
        for (byte, k) in piece.iter_mut().zip(blocks.as_flattened()) {
            *byte ^= k;
        }
    }
    keystream.zeroize();
}
