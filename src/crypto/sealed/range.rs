//! Random-access opening: serve a byte range of the plaintext while reading
//! only the header and the chunks that range touches (e.g. for HTTP Range
//! requests backed by S3 ranged GETs).

use std::future::Future;
use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::super::CryptoError;
use super::super::keys::{DataKey, ObjectKeys};
use super::TAG_LEN;
use super::chunk::{Chunk, ChunkCipher, off_runtime};
use super::header::{HEADER_LEN, Header};

/// Something that can read arbitrary byte ranges of one sealed object.
pub trait RangeSource {
    /// Total length of the sealed object in bytes.
    fn len(&self) -> u64;

    /// True for a zero-length object (never a valid sealed object).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `len` bytes starting at `offset`. Returning fewer bytes than
    /// asked is treated as an I/O error, since `len()` promised them.
    fn read_at(&self, offset: u64, len: usize) -> impl Future<Output = io::Result<Vec<u8>>> + Send;
}

/// Writes plaintext bytes `start..=end_inclusive` to `output` and returns how
/// many were written.
///
/// Reads the header and then each touched chunk once, verifying each chunk
/// before writing any of its bytes, with one chunk in memory at a time.
///
/// The plaintext length comes from `source.len()`, which is not itself
/// authenticated unless the range touches the final chunk: a ranged read of a
/// truncated object still returns only authentic bytes at their true
/// positions, but will not notice the truncation. Use
/// `authenticated_plaintext_len` when the total length matters (e.g. for a
/// `Content-Range` total).
pub async fn open_range<S, W>(
    key: &DataKey,
    source: &S,
    start: u64,
    end_inclusive: u64,
    mut output: W,
) -> Result<u64, CryptoError>
where
    S: RangeSource,
    W: AsyncWrite + Unpin,
{
    let object = VerifiedObject::load(key, source).await?;
    let plaintext_len = object.plaintext_len;
    if start > end_inclusive || end_inclusive >= plaintext_len {
        return Err(CryptoError::RangeOutOfBounds {
            start,
            end_inclusive,
            plaintext_len,
        });
    }
    let chunk_size = u64::from(object.header.chunk_size);
    let last = end_inclusive / chunk_size;
    let mut written = 0u64;
    let mut first = start / chunk_size;
    while first <= last {
        let group_last = last.min(first + object.chunks_per_read() - 1);
        let (chunks, failure) = object.read_chunks(source, first, group_last).await?;
        for (index, plaintext) in (first..).zip(chunks.iter()) {
            let chunk_start = index * chunk_size;
            // Both bounds lie inside this chunk by construction of the range.
            let from = start.saturating_sub(chunk_start) as usize;
            let to = (end_inclusive + 1 - chunk_start).min(plaintext.len() as u64) as usize;
            output.write_all(&plaintext[from..to]).await?;
            written += (to - from) as u64;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        first = group_last + 1;
    }
    output.flush().await?;
    Ok(written)
}

/// The plaintext length, authenticated by verifying the header and the final
/// chunk (reads `HEADER_LEN` plus at most one chunk).
pub async fn authenticated_plaintext_len<S: RangeSource>(
    key: &DataKey,
    source: &S,
) -> Result<u64, CryptoError> {
    let object = VerifiedObject::load(key, source).await?;
    if let (_, Some(e)) = object
        .read_chunks(source, object.last_index, object.last_index)
        .await?
    {
        return Err(e);
    }
    Ok(object.plaintext_len)
}

/// A source whose header has been parsed and authenticated.
struct VerifiedObject {
    header: Header,
    cipher: std::sync::Arc<ChunkCipher>,
    plaintext_len: u64,
    last_index: u64,
}

impl VerifiedObject {
    async fn load<S: RangeSource>(key: &DataKey, source: &S) -> Result<Self, CryptoError> {
        let sealed_len = source.len();
        if sealed_len < HEADER_LEN as u64 {
            // Fits: it is below HEADER_LEN.
            return Err(CryptoError::TruncatedHeader(sealed_len as usize));
        }
        let header = Header::parse(&read_exact_at(source, 0, HEADER_LEN).await?)?;
        let keys = ObjectKeys::derive(key, &header.nonce, &header.object_id)?;
        header.verify(&keys)?;
        let plaintext_len = header.plaintext_len(sealed_len)?;
        let last_index = header.chunk_count(plaintext_len) - 1;
        let cipher = std::sync::Arc::new(ChunkCipher::new(keys, &header));
        Ok(Self {
            header,
            cipher,
            plaintext_len,
            last_index,
        })
    }

    /// Chunks read, verified and decrypted together: 4 MiB of them, so their tags are
    /// computed as parallel CMAC lanes rather than one chunk at a time.
    fn chunks_per_read(&self) -> u64 {
        ((4 << 20) / self.header.stride()).max(1)
    }

    /// Reads chunks `first..=last` (in range) in one read, verifies them together and
    /// decrypts the ones that verify. Returns the plaintext of the leading chunks that
    /// verified, and the failure of the chunk after them if there was one.
    async fn read_chunks<S: RangeSource>(
        &self,
        source: &S,
        first: u64,
        last: u64,
    ) -> Result<(Vec<Vec<u8>>, Option<CryptoError>), CryptoError> {
        let chunk_size = u64::from(self.header.chunk_size);
        let stride = self.header.stride() as usize;
        let data_len =
            |index: u64| (self.plaintext_len - index * chunk_size).min(chunk_size) as usize;
        let offset = self.header.chunk_offset(first);
        let total = (last - first) as usize * stride + data_len(last) + TAG_LEN;
        let mut sealed = read_exact_at(source, offset, total).await?;
        let (cipher, last_index) = (self.cipher.clone(), self.last_index);
        let lens: Vec<usize> = (first..=last).map(data_len).collect();
        off_runtime(move || {
            let mut chunks: Vec<Chunk<'_>> = sealed
                .chunks_mut(stride)
                .zip(&lens)
                .zip(first..)
                .map(|((slot, &n), index)| {
                    let (data, rest) = slot.split_at_mut(n);
                    Chunk {
                        index,
                        is_final: index == last_index,
                        data,
                        tag: &mut rest[..TAG_LEN],
                    }
                })
                .collect();
            let (verified, failure) = cipher.open_batch(&mut chunks);
            let plaintext = chunks[..verified].iter().map(|c| c.data.to_vec()).collect();
            Ok((plaintext, failure))
        })
        .await
    }
}

async fn read_exact_at<S: RangeSource>(source: &S, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let bytes = source.read_at(offset, len).await?;
    if bytes.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "range source returned {} bytes at offset {offset}, expected {len}",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}
