//! CMAC (NIST SP 800-38B) over SM4.

use super::SM4_BLOCK_LEN;
use super::sm4::{Sm4, bytes, words};

/// CMAC of the concatenation of `parts`.
///
/// CBC-MAC absorbs every block but the last, which gets a subkey mixed in;
/// whether a block is the last is only known once every part has been seen,
/// so the most recent block is held back in `pending`.
pub(super) fn mac(cipher: &Sm4, parts: &[&[u8]]) -> [u8; SM4_BLOCK_LEN] {
    let mut state = [0u32; 4];
    let mut pending = [0u8; SM4_BLOCK_LEN];
    let mut pending_len = 0;
    for mut part in parts.iter().copied() {
        while !part.is_empty() {
            if pending_len == SM4_BLOCK_LEN {
                state = cipher.encrypt_words(xor(state, words(&pending)));
                pending_len = 0;
            }
            // Fast path: whole blocks straight from the input, keeping at
            // least one byte back so the final block is never absorbed early.
            if pending_len == 0 {
                while part.len() > SM4_BLOCK_LEN {
                    let (block, rest) = part.split_at(SM4_BLOCK_LEN);
                    let mut copy = [0u8; SM4_BLOCK_LEN];
                    copy.copy_from_slice(block);
                    state = cipher.encrypt_words(xor(state, words(&copy)));
                    part = rest;
                }
            }
            let take = (SM4_BLOCK_LEN - pending_len).min(part.len());
            pending[pending_len..pending_len + take].copy_from_slice(&part[..take]);
            pending_len += take;
            part = &part[take..];
        }
    }
    let (k1, k2) = subkeys(cipher);
    let last = if pending_len == SM4_BLOCK_LEN {
        xor(words(&pending), k1)
    } else {
        // Pad with 10*: also the empty-message case (pending_len == 0).
        pending[pending_len] = 0x80;
        pending[pending_len + 1..].fill(0);
        xor(words(&pending), k2)
    };
    bytes(cipher.encrypt_words(xor(state, last)))
}

/// Subkeys K1 = dbl(E(0)) and K2 = dbl(K1), doubling in GF(2^128).
fn subkeys(cipher: &Sm4) -> ([u32; 4], [u32; 4]) {
    let dbl = |x: u128| (x << 1) ^ if x >> 127 == 1 { 0x87 } else { 0 };
    let l = u128::from_be_bytes(bytes(cipher.encrypt_words([0; 4])));
    let k1 = dbl(l);
    let k2 = dbl(k1);
    (words(&k1.to_be_bytes()), words(&k2.to_be_bytes()))
}

fn xor(a: [u32; 4], b: [u32; 4]) -> [u32; 4] {
    [a[0] ^ b[0], a[1] ^ b[1], a[2] ^ b[2], a[3] ^ b[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block hand-off must not depend on how the message is split.
    #[test]
    fn parts_equal_concatenation() {
        let cipher = Sm4::new(&[0x33; 16]);
        let data: Vec<u8> = (0..70u8).collect();
        for len in 0..data.len() {
            let message = &data[..len];
            let whole = mac(&cipher, &[message]);
            for a in 0..=len {
                for b in a..=len {
                    let parts: [&[u8]; 4] = [&message[..a], &[], &message[a..b], &message[b..]];
                    assert_eq!(mac(&cipher, &parts), whole, "len {len} split {a}/{b}");
                }
            }
        }
    }
}
