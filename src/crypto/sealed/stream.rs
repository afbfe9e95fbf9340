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
    // Each slot holds a chunk's bytes and then its tag; full chunks fill their
    // slots exactly, so a sealed batch is one contiguous run of bytes.
    let mut buf = Vec::new();
    let mut plaintext_len = 0u64;
    let mut sealed_len = HEADER_LEN as u64;
    let mut next_index = 0u64;
    loop {
        let mut lens = Vec::new();
        let mut at_end = false;
        while lens.len() < batch_chunks(chunk_size) && !at_end {
            let start = lens.len() * slot;
            if buf.len() < start + slot {
                buf.resize(start + slot, 0);
            }
            let n = read_full(&mut input, &mut buf[start..start + chunk_size]).await?;
            // A full chunk is final only if nothing follows it; peeking keeps
            // the encoding canonical (no empty final chunk after full chunks).
            at_end = n < chunk_size || at_eof(&mut input).await?;
            lens.push(n);
        }
        let (c, first, batch_lens) = (cipher.clone(), next_index, lens.clone());
        buf = off_runtime(move || {
            let mut chunks = batch(&mut buf, slot, first, &batch_lens, at_end, |n| n);
            c.seal_batch(&mut chunks)?;
            Ok(buf)
        })
        .await?;
        let batch_plaintext: usize = lens.iter().sum();
        let batch_sealed = batch_plaintext + lens.len() * TAG_LEN;
        output.write_all(&buf[..batch_sealed]).await?;
        plaintext_len += batch_plaintext as u64;
        sealed_len += batch_sealed as u64;
        next_index += lens.len() as u64;
        if at_end {
            break;
        }
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

    let chunk_size = header.chunk_size as usize;
    let slot = chunk_size + TAG_LEN;
    let mut buf = Vec::new();
    let mut plaintext_len = 0u64;
    let mut next_index = 0u64;
    loop {
        let mut lens = Vec::new();
        let (mut at_end, mut truncated) = (false, false);
        while lens.len() < batch_chunks(chunk_size) && !at_end {
            let start = lens.len() * slot;
            if buf.len() < start + slot {
                buf.resize(start + slot, 0);
            }
            let n = read_full(&mut input, &mut buf[start..start + slot]).await?;
            if n < TAG_LEN {
                truncated = true;
                break;
            }
            at_end = n < slot || at_eof(&mut input).await?;
            lens.push(n);
        }
        let (c, first, batch_lens) = (cipher.clone(), next_index, lens.clone());
        let (returned, verified, failure) = off_runtime(move || {
            let mut chunks = batch(&mut buf, slot, first, &batch_lens, at_end, |n| n - TAG_LEN);
            let (verified, failure) = c.open_batch(&mut chunks);
            Ok((buf, verified, failure))
        })
        .await?;
        buf = returned;
        // Release only the verified prefix, in order.
        for (i, &n) in lens[..verified].iter().enumerate() {
            let data = &buf[i * slot..i * slot + n - TAG_LEN];
            output.write_all(data).await?;
            plaintext_len += data.len() as u64;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        next_index += lens.len() as u64;
        if truncated {
            return Err(CryptoError::Truncated {
                verified_chunks: next_index,
            });
        }
        if at_end {
            break;
        }
    }
    output.flush().await?;
    Ok(OpenSummary {
        header,
        plaintext_len,
    })
}

/// Plaintext bytes per batch: enough chunks for every SIMD lane on both cores
/// (64 chunks of the default 64 KiB), and a bound on memory per stream.
const BATCH_BYTES: usize = 4 << 20;

fn batch_chunks(chunk_size: usize) -> usize {
    (BATCH_BYTES / chunk_size).max(1)
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
