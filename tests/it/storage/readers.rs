//! Input streams for tests: a deterministic generator that can fail on purpose, and hashing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Produces `len` pseudo-random bytes without holding them in memory, so multi-MiB uploads
/// test constant-memory streaming. The bytes depend on position only, so misordered or
/// repeated parts change the hash.
pub struct Generator {
    len: u64,
    pos: u64,
    /// Fail with an I/O error once this many bytes were produced.
    fail_at: Option<u64>,
}

impl Generator {
    pub fn new(len: u64) -> Self {
        Generator {
            len,
            pos: 0,
            fail_at: None,
        }
    }

    /// A reader that breaks after `fail_at` bytes, like a dropped client connection.
    pub fn failing(len: u64, fail_at: u64) -> Self {
        Generator {
            fail_at: Some(fail_at),
            ..Generator::new(len)
        }
    }

    fn byte_at(pos: u64) -> u8 {
        // SplitMix64-style mixing of the position; cheap and well spread.
        let mut x = pos.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (x ^ (x >> 31)) as u8
    }

    /// The bytes at `offset..offset + len` of any generator's output.
    pub fn expected(offset: u64, len: u64) -> Vec<u8> {
        (offset..offset + len).map(Generator::byte_at).collect()
    }
}

impl AsyncRead for Generator {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.fail_at.is_some_and(|at| self.pos >= at) {
            return Poll::Ready(Err(io::Error::other("simulated input failure")));
        }
        let limit = self.fail_at.unwrap_or(self.len).min(self.len);
        let n = (limit - self.pos).min(buf.remaining() as u64);
        let start = self.pos;
        for (pos, byte) in (start..).zip(buf.initialize_unfilled_to(n as usize)) {
            *byte = Generator::byte_at(pos);
        }
        buf.advance(n as usize);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// SHA-256 of everything `reader` yields.
pub async fn sha256_of(mut reader: impl AsyncRead + Unpin) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).await.expect("read stream");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().into()
}
