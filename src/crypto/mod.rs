//! Cryptographic core of vcw: GM/T primitives (SM4, SM3) and the sealed object
//! format that protects stored media at rest.
//!
//! See docs/sealed-format.md for the byte layout. In short: a 112-byte
//! authenticated header, then fixed-size chunks, each encrypted with SM4-CTR and
//! authenticated with CMAC-SM4 bound to the header, its index and whether it is
//! the last one, so chunks cannot be altered, reordered, dropped, or moved
//! between objects.

use std::io;

use thiserror::Error;

mod keyring;
mod keys;
pub mod primitives;
mod sealed;
mod signing;

pub use keyring::{Key16, KeyError, Kms, LocalKms, WRAPPED_LEN, random, unwrap_key, wrap_key};
pub use keys::DataKey;
pub use sealed::{
    DEFAULT_CHUNK_SIZE, HEADER_LEN, Header, MAX_CHUNK_SIZE, OpenSummary, RangeSource, SealParams,
    SealSummary, TAG_LEN, authenticated_plaintext_len, open, open_range, seal,
};
pub use signing::{key_id, pkcs8_der, read_signing_key, signing_key_file};

/// Everything that can go wrong while sealing or opening.
///
/// Variants name the failure precisely so operators can tell a wrong key from a
/// truncated upload from tampering. Note that a wrong key and a tampered header
/// are cryptographically indistinguishable, hence one variant for both.
#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("not a sealed object: bad magic")]
    BadMagic,
    #[error("unsupported sealed format version {0}")]
    UnsupportedVersion(u16),
    #[error("unsupported sealed algorithm {0}")]
    UnsupportedAlgorithm(u16),
    #[error("invalid chunk size {0}: must be a multiple of 16 between 16 and 16 MiB")]
    InvalidChunkSize(u32),
    #[error("reserved header bytes are not zero")]
    NonZeroReserved,
    #[error("sealed header is truncated: got {0} of 112 bytes")]
    TruncatedHeader(usize),
    #[error("header authentication failed: wrong key or tampered header")]
    HeaderAuthFailed,
    #[error("chunk {index} authentication failed: tampered, reordered or misplaced data")]
    ChunkAuthFailed { index: u64 },
    #[error(
        "sealed object is truncated: input ended after {verified_chunks} verified chunk(s) without a final chunk"
    )]
    Truncated { verified_chunks: u64 },
    #[error("trailing data after the final chunk (chunk {final_index})")]
    TrailingData { final_index: u64 },
    #[error("empty final chunk {index} after full chunks (non-canonical encoding)")]
    EmptyFinalChunk { index: u64 },
    #[error("invalid sealed object length {0}: no whole number of chunks fits")]
    InvalidSealedLength(u64),
    #[error(
        "range {start}..={end_inclusive} is out of bounds for a plaintext of {plaintext_len} bytes"
    )]
    RangeOutOfBounds {
        start: u64,
        end_inclusive: u64,
        plaintext_len: u64,
    },
    #[error("object too large for the sealed format's counter space")]
    TooLarge,
    #[error("HKDF-SM3 cannot produce {0} bytes")]
    KdfOutputTooLong(usize),
    #[error("operating system random number generator failed: {0}")]
    Rng(String),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}
