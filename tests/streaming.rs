//! Constant-memory streaming: 256 MiB from a generator, sealed into a pipe and
//! opened on the other end into a hashing sink, never held in memory.
//!
//! Kept in its own test binary so the process's peak RSS reflects only this
//! test.

#[path = "it/crypto_support.rs"]
mod common;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use common::Rng;
use sm3::{Digest, Sm3};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use vcw::crypto::{DEFAULT_CHUNK_SIZE, DataKey, open, seal};

const TOTAL: u64 = 256 * 1024 * 1024;

/// Yields `remaining` pseudo-random bytes in odd-sized pieces, hashing them.
struct Generator {
    rng: Rng,
    remaining: u64,
    hash: Sm3,
}

impl AsyncRead for Generator {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Odd piece sizes so chunk boundaries never line up with reads.
        let n = (buf.remaining() as u64).min(this.remaining).min(40_009) as usize;
        let piece = buf.initialize_unfilled_to(n);
        this.rng.fill(piece);
        this.hash.update(&piece[..n]);
        buf.advance(n);
        this.remaining -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// Hashes and counts everything written to it.
#[derive(Default)]
struct HashSink {
    len: u64,
    hash: Sm3,
}

impl AsyncWrite for HashSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.hash.update(buf);
        this.len += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Peak resident set size of this process, in bytes (Linux only).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test(flavor = "current_thread")]
async fn seal_and_open_256_mib_through_a_pipe_in_constant_memory() {
    let key = DataKey::generate().unwrap();
    let params = common::params(DEFAULT_CHUNK_SIZE, [0x42; 16]);
    let mut generator = Generator {
        rng: Rng(99),
        remaining: TOTAL,
        hash: Sm3::new(),
    };
    let mut sink = HashSink::default();
    let (pipe_in, pipe_out) = tokio::io::duplex(64 * 1024);

    // `seal` consumes (and so closes) its end of the pipe when done, which is
    // how `open` sees the end of the sealed stream.
    let (sealed, opened) = tokio::join!(
        seal(&key, &params, None, &mut generator, pipe_in),
        open(&key, pipe_out, &mut sink)
    );
    let sealed = sealed.unwrap();
    let opened = opened.unwrap();

    assert_eq!(sealed.plaintext_len, TOTAL);
    assert_eq!(sealed.sealed_len, sealed.header.sealed_len(TOTAL));
    assert_eq!(opened.plaintext_len, TOTAL);
    assert_eq!(sink.len, TOTAL);
    assert_eq!(generator.hash.finalize(), sink.hash.finalize());

    if let Some(peak) = peak_rss() {
        // Buffers are a chunk plus small pipe/read-ahead buffers; anything
        // near the object size would mean something is accumulating.
        assert!(peak < 64 * 1024 * 1024, "peak RSS {peak} bytes");
        eprintln!("peak RSS {} MiB", peak / (1024 * 1024));
    }
}
