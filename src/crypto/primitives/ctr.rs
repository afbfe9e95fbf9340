//! Counter mode over SM4, with the OpenSSL counter convention.

use super::SM4_BLOCK_LEN;
use super::sm4::{LANES, Sm4, bytes, words};

/// XORs the keystream starting at `counter_block` into `data`. The whole block
/// is one big-endian counter that wraps at 2^128, as in OpenSSL's `sm4-ctr`.
/// Keystream blocks are made `LANES` at a time so their SM4 rounds overlap.
pub(super) fn apply(cipher: &Sm4, counter_block: &[u8; SM4_BLOCK_LEN], data: &mut [u8]) {
    let mut counter = u128::from_be_bytes(*counter_block);
    for piece in data.chunks_mut(LANES * SM4_BLOCK_LEN) {
        let mut keystream: [[u32; 4]; LANES] =
            std::array::from_fn(|lane| words(&counter.wrapping_add(lane as u128).to_be_bytes()));
        cipher.encrypt_lanes(&mut keystream);
        for (block, stream) in piece.chunks_mut(SM4_BLOCK_LEN).zip(keystream) {
            for (byte, k) in block.iter_mut().zip(bytes(stream)) {
                *byte ^= k;
            }
        }
        counter = counter.wrapping_add(LANES as u128);
    }
}
