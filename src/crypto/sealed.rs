//! Sealed object format v1: an authenticated header followed by independently
//! authenticated chunks (byte layout in docs/sealed-format.md).
//!
//! Chunking is what lets us stream objects of any size through one fixed
//! buffer, release plaintext only after its chunk verified, and serve byte
//! ranges by reading just the chunks a range touches.

mod chunk;
mod header;
mod range;
mod stream;

pub use header::{HEADER_LEN, Header};
pub use range::{RangeSource, authenticated_plaintext_len, open_range};
pub use stream::{OpenSummary, SealSummary, open, seal};

/// Length of every tag (header and chunk): one CMAC-SM4 block.
pub const TAG_LEN: usize = 16;
/// Default plaintext bytes per chunk: large enough that the per-chunk 16-byte
/// tag is 0.02% overhead, small enough that a range read wastes little.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Upper bound on chunk size, which is also the streaming buffer size, so a
/// hostile header cannot make a reader allocate more than this.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;

/// Everything about an object the sealer chooses; the key and nonce are
/// passed separately because they are secret or random.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealParams {
    pub object_id: [u8; 16],
    pub data_key_id: [u8; 16],
    pub subject_key_id: [u8; 16],
    pub subject_key_version: u32,
    pub kek_version: u32,
    /// Plaintext bytes per chunk: a multiple of 16 in `16..=MAX_CHUNK_SIZE`.
    pub chunk_size: u32,
}

impl Default for SealParams {
    fn default() -> Self {
        Self {
            object_id: [0; 16],
            data_key_id: [0; 16],
            subject_key_id: [0; 16],
            subject_key_version: 0,
            kek_version: 0,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}
