//! Per-chunk encryption and authentication, shared by the streaming and the
//! random-access readers so both enforce exactly the same rules.

use subtle::ConstantTimeEq;

use super::super::CryptoError;
use super::super::keys::ObjectKeys;
use super::super::primitives::{SM4_BLOCK_LEN, Sm4Key};
use super::TAG_LEN;
use super::header::Header;

/// Seals and opens the chunks of one object.
///
/// Each chunk tag covers `header_tag || u64_be(index) || u8(final) || ciphertext`:
/// the header tag ties chunks to this object (its nonce, ids and keys), the
/// index stops reordering, and the final flag makes truncation at a chunk
/// boundary detectable.
pub(crate) struct ChunkCipher {
    enc: Sm4Key,
    mac: Sm4Key,
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
            enc: Sm4Key::new(&keys.enc),
            mac: Sm4Key::new(&keys.mac),
            nonce_prefix,
            blocks_per_chunk: u64::from(header.chunk_size) / SM4_BLOCK_LEN as u64,
            header_tag: header.header_tag,
        }
    }

    /// Encrypts `data` in place and returns its tag (encrypt-then-MAC); the
    /// one-chunk form of `seal_batch`, for tests.
    #[cfg(test)]
    pub(crate) fn seal(
        &self,
        index: u64,
        is_final: bool,
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        self.enc.ctr_apply(&self.counter_block(index)?, data);
        Ok(self.tag(index, is_final, data))
    }

    /// Seals a batch: each chunk is encrypted, then all tags are computed as
    /// parallel CMAC lanes. The batch is split across the CPU's cores.
    pub(crate) fn seal_batch(&self, chunks: &mut [Chunk<'_>]) -> Result<(), CryptoError> {
        on_cores(chunks, |part| {
            for c in part.iter_mut() {
                self.enc.ctr_apply(&self.counter_block(c.index)?, c.data);
            }
            let tags = self.tags(part);
            for (c, tag) in part.iter_mut().zip(tags) {
                c.tag.copy_from_slice(&tag);
            }
            Ok(())
        })
        .into_iter()
        .collect()
    }

    /// Verifies a batch and decrypts the chunks that verify, split across
    /// cores. Returns how many leading chunks are now authentic plaintext,
    /// with the error of the chunk after them if any failed; that chunk and
    /// any unverified one stay ciphertext.
    pub(crate) fn open_batch(&self, chunks: &mut [Chunk<'_>]) -> (usize, Option<CryptoError>) {
        let verdicts: Vec<Result<(), CryptoError>> = on_cores(chunks, |part| {
            let tags = self.tags(part);
            part.iter_mut()
                .zip(tags)
                .map(|(c, tag)| {
                    if !bool::from(tag.ct_eq(c.tag)) {
                        return Err(diagnose(self, c.index, c.is_final, c.data, c.tag));
                    }
                    if c.is_final && c.data.is_empty() && c.index > 0 {
                        return Err(CryptoError::EmptyFinalChunk { index: c.index });
                    }
                    self.decrypt(c.index, c.data)
                })
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect();
        let verified = verdicts.iter().take_while(|v| v.is_ok()).count();
        (verified, verdicts.into_iter().find_map(Result::err))
    }

    /// Constant-time check of a chunk's tag; decrypts nothing.
    pub(crate) fn verify(&self, index: u64, is_final: bool, ciphertext: &[u8], tag: &[u8]) -> bool {
        bool::from(self.tag(index, is_final, ciphertext).ct_eq(tag))
    }

    /// Decrypts in place without checking anything: only for callers that
    /// have just called `verify` on the same bytes.
    pub(crate) fn decrypt(&self, index: u64, data: &mut [u8]) -> Result<(), CryptoError> {
        self.enc.ctr_apply(&self.counter_block(index)?, data);
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
        let prefix = tag_prefix(index, is_final);
        self.mac.cmac(&[&self.header_tag, &prefix, ciphertext])
    }

    /// The tags of a batch, side by side as CMAC lanes.
    fn tags(&self, chunks: &[Chunk<'_>]) -> Vec<[u8; TAG_LEN]> {
        let prefixes: Vec<_> = chunks
            .iter()
            .map(|c| tag_prefix(c.index, c.is_final))
            .collect();
        let messages: Vec<[&[u8]; 3]> = chunks
            .iter()
            .zip(&prefixes)
            .map(|(c, prefix)| [&self.header_tag[..], &prefix[..], &*c.data])
            .collect();
        let messages: Vec<&[&[u8]]> = messages.iter().map(|m| &m[..]).collect();
        self.mac.cmac_many(&messages)
    }
}

/// `u64_be(index) || u8(final)`, what a chunk tag covers after the header tag.
fn tag_prefix(index: u64, is_final: bool) -> [u8; 9] {
    let mut prefix = [0u8; 9];
    prefix[..8].copy_from_slice(&index.to_be_bytes());
    prefix[8] = u8::from(is_final);
    prefix
}

/// One chunk of a batch: its bytes (plaintext or ciphertext) and its tag.
pub(crate) struct Chunk<'a> {
    pub(crate) index: u64,
    pub(crate) is_final: bool,
    pub(crate) data: &'a mut [u8],
    pub(crate) tag: &'a mut [u8],
}

/// Names the failure of a chunk that did not verify under the expected final
/// flag. If it verifies under the other flag it is authentic but in the wrong
/// place: a non-final chunk at end of input means the object was cut at a
/// chunk boundary, and a final chunk with more input means bytes were
/// appended. Only runs on the error path, so it costs nothing normally.
pub(crate) fn diagnose(
    cipher: &ChunkCipher,
    index: u64,
    is_final: bool,
    data: &[u8],
    tag: &[u8],
) -> CryptoError {
    if !cipher.verify(index, !is_final, data, tag) {
        CryptoError::ChunkAuthFailed { index }
    } else if is_final {
        CryptoError::Truncated {
            verified_chunks: index + 1,
        }
    } else {
        CryptoError::TrailingData { final_index: index }
    }
}

/// Chunks per core below which splitting a batch costs more than it saves
/// (a thread start is tens of microseconds; a 64 KiB chunk about thirty).
const MIN_CHUNKS_PER_CORE: usize = 4;

/// Runs `work` on contiguous parts of `items`, one thread per core, and
/// returns the parts' results in order. Blocking: call from `off_runtime`.
fn on_cores<T: Send, R: Send>(items: &mut [T], work: impl Fn(&mut [T]) -> R + Sync) -> Vec<R> {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = cores.min(items.len() / MIN_CHUNKS_PER_CORE).max(1);
    if threads == 1 {
        return vec![work(items)];
    }
    let per_thread = items.len().div_ceil(threads);
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks_mut(per_thread)
            .map(|part| scope.spawn(move || work(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Starts chunk work (SM4 and CMAC over a batch of chunks, milliseconds) on
/// tokio's blocking pool and returns its result as a future. The work starts
/// at once, so a caller can read the next batch while it runs. An async worker
/// thread is shared by every request, and one held by crypto would delay the
/// others (and `/healthz`) behind it.
pub(crate) fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CryptoError> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, CryptoError>> {
    let job = tokio::task::spawn_blocking(work);
    async move {
        job.await
            .map_err(|e| CryptoError::Io(std::io::Error::other(e)))?
    }
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
        c.decrypt(3, &mut data).unwrap();
        assert_eq!(&data, b"sixteen byte msgsixteen byte msg");
    }
}
