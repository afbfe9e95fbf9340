//! Streaming seal and open over tokio byte streams, in constant memory: one
//! chunk-sized buffer plus a small read-ahead buffer, whatever the object size.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::super::CryptoError;
use super::super::keys::{DataKey, ObjectKeys, fill_random};
use std::sync::Arc;

use super::chunk::{ChunkCipher, off_runtime};
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
    let mut buf = vec![0u8; chunk_size + TAG_LEN];
    let mut plaintext_len = 0u64;
    let mut sealed_len = HEADER_LEN as u64;
    for index in 0u64.. {
        let n = read_full(&mut input, &mut buf[..chunk_size]).await?;
        // A full chunk is final only if nothing follows it; peeking keeps the
        // encoding canonical (no empty final chunk after full chunks).
        let is_final = n < chunk_size || at_eof(&mut input).await?;
        let c = cipher.clone();
        buf = off_runtime(move || {
            let (data, rest) = buf.split_at_mut(n);
            rest[..TAG_LEN].copy_from_slice(&c.seal(index, is_final, data)?);
            Ok(buf)
        })
        .await?;
        output.write_all(&buf[..n + TAG_LEN]).await?;
        plaintext_len += n as u64;
        sealed_len += (n + TAG_LEN) as u64;
        if is_final {
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

    let mut buf = vec![0u8; header.chunk_size as usize + TAG_LEN];
    let mut plaintext_len = 0u64;
    for index in 0u64.. {
        let n = read_full(&mut input, &mut buf).await?;
        if n < TAG_LEN {
            return Err(CryptoError::Truncated {
                verified_chunks: index,
            });
        }
        let is_final = n < buf.len() || at_eof(&mut input).await?;
        let c = cipher.clone();
        buf = off_runtime(move || {
            let (data, tag) = buf[..n].split_at_mut(n - TAG_LEN);
            if !c.verify(index, is_final, data, tag) {
                return Err(diagnose(&c, index, is_final, data, tag));
            }
            if is_final && data.is_empty() && index > 0 {
                return Err(CryptoError::EmptyFinalChunk { index });
            }
            c.decrypt(index, data)?;
            Ok(buf)
        })
        .await?;
        let data = &buf[..n - TAG_LEN];
        output.write_all(data).await?;
        plaintext_len += data.len() as u64;
        if is_final {
            break;
        }
    }
    output.flush().await?;
    Ok(OpenSummary {
        header,
        plaintext_len,
    })
}

/// Names the failure of a chunk that did not verify under the expected final
/// flag. If it verifies under the other flag it is authentic but in the wrong
/// place: a non-final chunk at end of input means the object was cut at a
/// chunk boundary, and a final chunk with more input means bytes were
/// appended. Only runs on the error path, so it costs nothing normally.
fn diagnose(
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
