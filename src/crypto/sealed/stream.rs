//! Streaming seal and open over tokio byte streams, in constant memory: one
//! chunk-sized buffer plus a small read-ahead buffer, whatever the object size.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::super::CryptoError;
use super::super::keys::{DataKey, ObjectKeys, fill_random};
use std::sync::Arc;

use super::chunk::{Chunk, ChunkCipher, off_runtime};
use super::header::{HEADER_LEN, Header};
use super::{SealParams, TAG_LEN};

/// What `seal` produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealSummary {
    pub header: Header,
    pub plaintext_len: u64,
    pub sealed_len: u64,
}

/// What `open` verified and released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSummary {
    pub header: Header,
    pub plaintext_len: u64,
}

/// Seals everything `input` yields into `output`.
///
/// `nonce` must be `None` in production (a fresh random nonce per object);
/// `Some` exists only to reproduce test vectors. The output is flushed but not
/// shut down, so the caller decides when the sink is complete.
pub async fn seal<R, W>(
    key: &DataKey,
    params: &SealParams,
    nonce: Option<[u8; 16]>,
    input: R,
    mut output: W,
) -> Result<SealSummary, CryptoError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let nonce = match nonce {
        Some(nonce) => nonce,
        None => {
            let mut nonce = [0u8; 16];
            fill_random(&mut nonce)?;
            nonce
        }
    };
    let mut header = Header::new(params, nonce)?;
    let keys = ObjectKeys::derive(key, &header.nonce, &header.object_id)?;
    header.sign(&keys);
    let cipher = Arc::new(ChunkCipher::new(keys, &header));
    output.write_all(&header.encode()).await?;

    let mut input = BufReader::new(input);
    let chunk_size = header.chunk_size as usize;
    let slot = chunk_size + TAG_LEN;
    let mut plaintext_len = 0u64;
    let mut sealed_len = HEADER_LEN as u64;
    let mut next_index = 0u64;
    // Two buffers: while one batch is sealed on the blocking pool, the next is
    // read and the previous one written.
    let mut spare = Vec::new();
    let mut in_flight = None;
    loop {
        let mut buf = std::mem::take(&mut spare);
        let batch_read = read_batch(&mut input, &mut buf, slot, chunk_size, 0).await?;
        let (c, first, lens, at_end) = (
            cipher.clone(),
            next_index,
            batch_read.lens.clone(),
            batch_read.at_end,
        );
        let job = off_runtime(move || {
            c.seal_batch(&mut batch(&mut buf, slot, first, &lens, at_end, |n| n))?;
            Ok(buf)
        });
        // Full chunks fill their slots exactly, so a sealed batch is one
        // contiguous run: the data of every chunk and a tag each.
        let batch_plaintext: usize = batch_read.lens.iter().sum();
        let batch_sealed = batch_plaintext + batch_read.lens.len() * TAG_LEN;
        if let Some((previous, len)) = in_flight.replace((job, batch_sealed)) {
            spare = previous.await?;
            output.write_all(&spare[..len]).await?;
        }
        plaintext_len += batch_plaintext as u64;
        sealed_len += batch_sealed as u64;
        next_index += batch_read.lens.len() as u64;
        if at_end {
            break;
        }
    }
    if let Some((last, len)) = in_flight {
        output.write_all(&last.await?[..len]).await?;
    }
    output.flush().await?;
    Ok(SealSummary {
        header,
        plaintext_len,
        sealed_len,
    })
}

/// Verifies and decrypts a sealed stream into `output`.
///
/// Each chunk is buffered and its tag verified before any of its plaintext is
/// written, so on error `output` holds exactly the plaintext of the chunks
/// before the failing one. Callers that must not act on partial output (e.g.
/// publish a file) should write to a temporary location and only commit it
/// when this returns `Ok`.
pub async fn open<R, W>(key: &DataKey, input: R, mut output: W) -> Result<OpenSummary, CryptoError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = BufReader::new(input);
    let mut header_bytes = [0u8; HEADER_LEN];
    let got = read_full(&mut input, &mut header_bytes).await?;
    let header = Header::parse(&header_bytes[..got])?;
    let keys = ObjectKeys::derive(key, &header.nonce, &header.object_id)?;
    header.verify(&keys)?;
    let cipher = Arc::new(ChunkCipher::new(keys, &header));

    let slot = header.chunk_size as usize + TAG_LEN;
    let mut plaintext_len = 0u64;
    let mut next_index = 0u64;
    // As in `seal`: the next batch is read while this one is verified.
    let mut spare = Vec::new();
    let mut in_flight = None;
    loop {
        let mut buf = std::mem::take(&mut spare);
        let batch_read = read_batch(&mut input, &mut buf, slot, slot, TAG_LEN).await?;
        let (c, first, lens, at_end) = (
            cipher.clone(),
            next_index,
            batch_read.lens.clone(),
            batch_read.at_end,
        );
        let job = off_runtime(move || {
            let (verified, failure) =
                c.open_batch(&mut batch(&mut buf, slot, first, &lens, at_end, |n| {
                    n - TAG_LEN
                }));
            Ok((buf, verified, failure))
        });
        if let Some((previous, lens)) = in_flight.replace((job, batch_read.lens.clone())) {
            spare = release(
                previous.await?,
                &lens,
                slot,
                &mut output,
                &mut plaintext_len,
            )
            .await?;
        }
        next_index += batch_read.lens.len() as u64;
        if batch_read.truncated {
            // Everything before the cut is released first, as it would have
            // been one batch at a time.
            if let Some((previous, lens)) = in_flight.take() {
                release(
                    previous.await?,
                    &lens,
                    slot,
                    &mut output,
                    &mut plaintext_len,
                )
                .await?;
            }
            return Err(CryptoError::Truncated {
                verified_chunks: next_index,
            });
        }
        if at_end {
            break;
        }
    }
    if let Some((last, lens)) = in_flight {
        release(last.await?, &lens, slot, &mut output, &mut plaintext_len).await?;
    }
    output.flush().await?;
    Ok(OpenSummary {
        header,
        plaintext_len,
    })
}

/// Plaintext bytes per batch: enough chunks for every SIMD lane on both cores
/// (64 chunks of the default 64 KiB), and a bound on memory per stream (two
/// batches).
const BATCH_BYTES: usize = 4 << 20;

/// What `read_batch` put in the buffer.
struct BatchRead {
    /// Bytes in each slot.
    lens: Vec<usize>,
    /// The input ended after the last slot.
    at_end: bool,
    /// The input ended with fewer than the minimum bytes for a slot (a sealed
    /// chunk needs at least its tag); that slot is not in `lens`.
    truncated: bool,
}

/// Reads up to a batch of slots of `read_len` bytes into `buf`, one per
/// `slot` bytes, growing it on first use so small objects stay small.
async fn read_batch<R: AsyncRead + Unpin>(
    input: &mut BufReader<R>,
    buf: &mut Vec<u8>,
    slot: usize,
    read_len: usize,
    min_len: usize,
) -> Result<BatchRead, CryptoError> {
    let mut read = BatchRead {
        lens: Vec::new(),
        at_end: false,
        truncated: false,
    };
    while read.lens.len() < (BATCH_BYTES / slot).max(1) {
        let start = read.lens.len() * slot;
        if buf.len() < start + slot {
            buf.resize(start + slot, 0);
        }
        let n = read_full(input, &mut buf[start..start + read_len]).await?;
        if n < min_len {
            read.truncated = true;
            break;
        }
        read.lens.push(n);
        // A full slot is the last only if nothing follows it; peeking keeps
        // the encoding canonical (no empty final chunk after full chunks).
        if n < read_len || at_eof(input).await? {
            read.at_end = true;
            break;
        }
    }
    Ok(read)
}

/// Writes the verified chunks of an opened batch, then fails with the first
/// failure if there was one. Returns the buffer for reuse.
async fn release<W: AsyncWrite + Unpin>(
    (buf, verified, failure): (Vec<u8>, usize, Option<CryptoError>),
    lens: &[usize],
    slot: usize,
    output: &mut W,
    plaintext_len: &mut u64,
) -> Result<Vec<u8>, CryptoError> {
    for (i, &n) in lens[..verified].iter().enumerate() {
        let data = &buf[i * slot..i * slot + n - TAG_LEN];
        output.write_all(data).await?;
        *plaintext_len += data.len() as u64;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(buf),
    }
}

/// The chunks of a batch laid out in `buf` one per `slot`: chunk `i` has
/// `lens[i]` bytes, of which `data_len(lens[i])` are data and the next
/// `TAG_LEN` its tag. The last is final if the input ended there.
fn batch<'a>(
    buf: &'a mut [u8],
    slot: usize,
    first: u64,
    lens: &[usize],
    at_end: bool,
    data_len: impl Fn(usize) -> usize,
) -> Vec<Chunk<'a>> {
    buf.chunks_mut(slot)
        .zip(lens)
        .enumerate()
        .map(|(i, (s, &n))| {
            let (data, rest) = s.split_at_mut(data_len(n));
            Chunk {
                index: first + i as u64,
                is_final: at_end && i + 1 == lens.len(),
                data,
                tag: &mut rest[..TAG_LEN],
            }
        })
        .collect()
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
async fn read_full<R: AsyncRead + Unpin>(input: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// True if the input has no more bytes, without consuming any.
async fn at_eof<R: AsyncRead + Unpin>(input: &mut BufReader<R>) -> std::io::Result<bool> {
    Ok(input.fill_buf().await?.is_empty())
}
