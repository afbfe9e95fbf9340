//! Per-chunk encryption and authentication, shared by the streaming and the
//! random-access readers so both enforce exactly the same rules.

use subtle::ConstantTimeEq;

use super::super::CryptoError;
use super::super::keys::ObjectKeys;
use super::super::primitives::{SM4_BLOCK_LEN, cmac_sm4, sm4_ctr_apply};
use super::TAG_LEN;
use super::header::Header;

/// Seals and opens the chunks of one object.
///
/// Each chunk tag covers `header_tag || u64_be(index) || u8(final) || ciphertext`:
/// the header tag ties chunks to this object (its nonce, ids and keys), the
/// index stops reordering, and the final flag makes truncation at a chunk
/// boundary detectable.
pub(crate) struct ChunkCipher {
    keys: ObjectKeys,
    nonce_prefix: [u8; 8],
    blocks_per_chunk: u64,
    header_tag: [u8; TAG_LEN],
}

impl ChunkCipher {
    /// `header` must already carry its final (signed or verified) tag.
    pub(crate) fn new(keys: ObjectKeys, header: &Header) -> Self {
        let mut nonce_prefix = [0u8; 8];
        nonce_prefix.copy_from_slice(&header.nonce[..8]);
        Self {
            keys,
            nonce_prefix,
            blocks_per_chunk: u64::from(header.chunk_size) / SM4_BLOCK_LEN as u64,
            header_tag: header.header_tag,
        }
    }

    /// Encrypts `data` in place and returns its tag (encrypt-then-MAC).
    pub(crate) fn seal(
        &self,
        index: u64,
        is_final: bool,
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        sm4_ctr_apply(&self.keys.enc, &self.counter_block(index)?, data);
        Ok(self.tag(index, is_final, data))
    }

    /// Constant-time check of a chunk's tag; decrypts nothing.
    pub(crate) fn verify(&self, index: u64, is_final: bool, ciphertext: &[u8], tag: &[u8]) -> bool {
        bool::from(self.tag(index, is_final, ciphertext).ct_eq(tag))
    }

    /// Verifies, then decrypts in place. On failure `data` is left as
    /// ciphertext, so no unauthenticated plaintext can escape.
    pub(crate) fn open(
        &self,
        index: u64,
        is_final: bool,
        data: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        if !self.verify(index, is_final, data, tag) {
            return Err(CryptoError::ChunkAuthFailed { index });
        }
        self.decrypt(index, data)
    }

    /// Decrypts in place without checking anything: only for callers that
    /// have just called `verify` on the same bytes.
    pub(crate) fn decrypt(&self, index: u64, data: &mut [u8]) -> Result<(), CryptoError> {
        sm4_ctr_apply(&self.keys.enc, &self.counter_block(index)?, data);
        Ok(())
    }

    /// `nonce[0..8] || u64_be(index * chunk_size / 16)`: chunk `i` owns counter
    /// values `[i * b, (i + 1) * b)` for `b` blocks per chunk, so chunks never
    /// share keystream. Fails if the last counter of the chunk would not fit in
    /// 64 bits, because then the 128-bit increment would carry into the nonce.
    fn counter_block(&self, index: u64) -> Result<[u8; SM4_BLOCK_LEN], CryptoError> {
        let first = index
            .checked_mul(self.blocks_per_chunk)
            .filter(|first| first.checked_add(self.blocks_per_chunk - 1).is_some())
            .ok_or(CryptoError::TooLarge)?;
        let mut block = [0u8; SM4_BLOCK_LEN];
        block[..8].copy_from_slice(&self.nonce_prefix);
        block[8..].copy_from_slice(&first.to_be_bytes());
        Ok(block)
    }

    fn tag(&self, index: u64, is_final: bool, ciphertext: &[u8]) -> [u8; TAG_LEN] {
        cmac_sm4(
            &self.keys.mac,
            &[
                &self.header_tag,
                &index.to_be_bytes(),
                &[u8::from(is_final)],
                ciphertext,
            ],
        )
    }
}

/// Runs chunk work (SM4 and CMAC over up to a chunk, about a millisecond for 64 KiB) on
/// tokio's blocking pool: an async worker thread is shared by every request, and one
/// held by crypto would delay the others (and `/healthz`) behind it.
pub(crate) async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CryptoError> + Send + 'static,
) -> Result<T, CryptoError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CryptoError::Io(std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::super::SealParams;
    use super::*;
    use crate::crypto::DataKey;

    fn cipher(chunk_size: u32) -> ChunkCipher {
        let params = SealParams {
            chunk_size,
            ..SealParams::default()
        };
        let mut header = Header::new(&params, [9; 16]).unwrap();
        let keys = ObjectKeys::derive(
            &DataKey::from_bytes([1; 16]),
            &header.nonce,
            &header.object_id,
        )
        .unwrap();
        header.sign(&keys);
        ChunkCipher::new(keys, &header)
    }

    #[test]
    fn counter_blocks_are_disjoint_per_chunk() {
        let c = cipher(64);
        assert_eq!(&c.counter_block(0).unwrap()[8..], &0u64.to_be_bytes());
        assert_eq!(&c.counter_block(1).unwrap()[8..], &4u64.to_be_bytes());
        assert_eq!(&c.counter_block(5).unwrap()[..8], &[9; 8]);
        assert!(matches!(
            c.counter_block(u64::MAX / 4 + 1),
            Err(CryptoError::TooLarge)
        ));
        assert!(c.counter_block(u64::MAX / 4).is_ok());
    }

    #[test]
    fn tag_binds_index_and_final_flag() {
        let c = cipher(32);
        let mut data = *b"sixteen byte msgsixteen byte msg";
        let tag = c.seal(3, false, &mut data).unwrap();
        assert!(c.verify(3, false, &data, &tag));
        assert!(!c.verify(3, true, &data, &tag));
        assert!(!c.verify(4, false, &data, &tag));
        let mut wrong = data;
        assert!(c.open(4, false, &mut wrong, &tag).is_err());
        assert_eq!(wrong, data, "failed open must not decrypt");
        c.open(3, false, &mut data, &tag).unwrap();
        assert_eq!(&data, b"sixteen byte msgsixteen byte msg");
    }
}
