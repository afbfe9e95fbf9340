//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use vcw::crypto::{CryptoError, DataKey, OpenSummary, RangeSource, SealParams, open, seal};

/// SplitMix64: deterministic, seedable test data so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.fill(&mut out);
        out
    }

    pub fn array16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        self.fill(&mut out);
        out
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|c| (c as char).to_digit(16).unwrap() as u8)
        .collect();
    digits
        .chunks(2)
        .map(|pair| pair[0] << 4 | pair[1])
        .collect()
}

pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

pub fn params(chunk_size: u32, object_id: [u8; 16]) -> SealParams {
    SealParams {
        object_id,
        data_key_id: [0xd1; 16],
        subject_key_id: [0x5b; 16],
        subject_key_version: 2,
        kek_version: 9,
        chunk_size,
    }
}

pub fn seal_vec(
    key: &DataKey,
    params: &SealParams,
    nonce: Option<[u8; 16]>,
    plaintext: &[u8],
) -> Vec<u8> {
    let mut sealed = Vec::new();
    let summary = block_on(seal(key, params, nonce, plaintext, &mut sealed)).unwrap();
    assert_eq!(summary.sealed_len, sealed.len() as u64);
    assert_eq!(summary.plaintext_len, plaintext.len() as u64);
    sealed
}

/// Opens `sealed`, returning the result and every byte released to the
/// writer, including on failure.
pub fn open_vec(key: &DataKey, sealed: &[u8]) -> (Result<OpenSummary, CryptoError>, Vec<u8>) {
    let mut released = Vec::new();
    let result = block_on(open(key, sealed, &mut released));
    (result, released)
}

/// In-memory range source that counts what it was asked for.
pub struct CountingSource {
    pub data: Vec<u8>,
    pub bytes_read: AtomicU64,
    pub reads: AtomicU64,
}

impl CountingSource {
    pub fn new(data: Vec<u8>) -> Self {
        Self {
            data,
            bytes_read: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }

    pub fn take_counts(&self) -> (u64, u64) {
        (
            self.bytes_read.swap(0, Ordering::Relaxed),
            self.reads.swap(0, Ordering::Relaxed),
        )
    }
}

impl RangeSource for CountingSource {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> impl Future<Output = io::Result<Vec<u8>>> + Send {
        let start = (offset as usize).min(self.data.len());
        let end = start.saturating_add(len).min(self.data.len());
        let bytes = self.data[start..end].to_vec();
        self.bytes_read
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(bytes))
    }
}
