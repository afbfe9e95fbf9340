//! Throughput of seal/open and the primitives they are made of, on 256 MiB held in
//! memory, for every SM4 path this CPU runs, next to RustCrypto's `sm4` CTR and CMAC on
//! the same bytes in the same run. `scripts/bench` runs it (and times OpenSSL
//! alongside). Prints `name MB/s` lines; `seal`/`open` use the process's path
//! (`VCW_SM4_IMPL` forces one). `seal_speed seal` measures only seal and open, for
//! profiling them (`perf record`), and the crypto of sealing alone: CTR and CMAC lanes
//! over the same bytes already laid out as sealed chunks, without the streams' copies
//! in and out.

use std::time::Instant;

use ctr::cipher::{KeyIvInit, StreamCipher};

use vcw::crypto::primitives::{Sm4Impl, Sm4Key};
use vcw::crypto::{DataKey, SealParams, open, seal};

const LEN: usize = 256 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

fn mb_per_s(bytes: usize, start: Instant) -> f64 {
    bytes as f64 / 1e6 / start.elapsed().as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().build()?;
    let plaintext: Vec<u8> = (0..LEN).map(|i| (i * 31 + i / 4099) as u8).collect();
    let key = DataKey::from_bytes([0x42; 16]);
    println!("sm4-path {}", Sm4Impl::selected().name());
    let only_seal = std::env::args().nth(1).as_deref() == Some("seal");
    if !only_seal {
        primitives(&plaintext)?;
    }

    // Output buffers are written once beforehand, so page faults on first touch
    // (a property of this benchmark, not of sealing) stay out of the figures.
    let mut sealed = vec![1u8; LEN + LEN / 1000 + 4096];
    sealed.clear();
    let params = SealParams::default();
    let start = Instant::now();
    runtime.block_on(seal(&key, &params, None, &plaintext[..], &mut sealed))?;
    println!("vcw-seal {:8.1} MB/s", mb_per_s(LEN, start));

    crypto_alone(&plaintext);

    let mut opened = vec![1u8; LEN];
    opened.clear();
    let start = Instant::now();
    runtime.block_on(open(&key, &sealed[..], &mut opened))?;
    println!("vcw-open {:8.1} MB/s", mb_per_s(LEN, start));
    assert!(opened == plaintext, "round trip mismatch");
    Ok(())
}

/// Each SM4 path's CTR and CMAC, and RustCrypto's.
fn primitives(plaintext: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    for imp in Sm4Impl::ALL.into_iter().filter(|i| i.is_supported()) {
        let sm4 = Sm4Key::with_impl(&[1; 16], imp);
        let mut buf = plaintext.to_vec();
        let start = Instant::now();
        sm4.ctr_apply(&[2; 16], &mut buf);
        println!(
            "vcw-sm4-ctr-{} {:8.1} MB/s",
            imp.name(),
            mb_per_s(LEN, start)
        );

        // CMAC of one 64 KiB chunk after another (what a lone range read does),
        // then of all 1024 chunks as lanes (what seal and open do, per core).
        let serial = &buf[..LEN / 16];
        let start = Instant::now();
        for chunk in serial.chunks(CHUNK) {
            std::hint::black_box(sm4.cmac(&[chunk]));
        }
        println!(
            "vcw-cmac-serial-{} {:8.1} MB/s",
            imp.name(),
            mb_per_s(serial.len(), start)
        );
        // Laid out as sealing lays chunks out (each followed by its 16-byte tag).
        // The offset matters: lanes exactly 64 KiB apart all fall in one L1 cache
        // set, and measured a third slower.
        let messages: Vec<[&[u8]; 1]> = buf
            .chunks(CHUNK + 16)
            .map(|c| [&c[..c.len().min(CHUNK)]])
            .collect();
        let macced: usize = messages.iter().map(|m| m[0].len()).sum();
        let messages: Vec<&[&[u8]]> = messages.iter().map(|m| &m[..]).collect();
        let start = Instant::now();
        for lanes in messages.chunks(64) {
            std::hint::black_box(sm4.cmac_many(lanes));
        }
        println!(
            "vcw-cmac-lanes-{} {:8.1} MB/s",
            imp.name(),
            mb_per_s(macced, start)
        );
    }

    let mut buf = plaintext.to_vec();
    let start = Instant::now();
    let mut rc = ctr::Ctr128BE::<sm4::Sm4>::new(&[1u8; 16].into(), &[2u8; 16].into());
    rc.apply_keystream(&mut buf);
    println!("rustcrypto-sm4-ctr {:8.1} MB/s", mb_per_s(LEN, start));

    let start = Instant::now();
    let mut mac = <cmac::Cmac<sm4::Sm4> as cmac::Mac>::new_from_slice(&[1u8; 16])?;
    cmac::Mac::update(&mut mac, &buf);
    std::hint::black_box(cmac::Mac::finalize(mac));
    println!("rustcrypto-cmac-sm4 {:8.1} MB/s", mb_per_s(LEN, start));

    Ok(())
}

/// What sealing computes, without its I/O: the bytes are laid out as sealed chunks
/// (64 KiB of data, then room for the tag) beforehand; each batch of 64 chunks is
/// encrypted chunk by chunk and then MACed as 64 lanes over `header tag || index ||
/// final flag || ciphertext`, as `seal` does.
fn crypto_alone(plaintext: &[u8]) {
    let sm4 = Sm4Key::new(&[5; 16]);
    let mac = Sm4Key::new(&[6; 16]);
    let slot = CHUNK + 16;
    let mut laid_out = vec![0u8; LEN / CHUNK * slot];
    for (s, p) in laid_out.chunks_mut(slot).zip(plaintext.chunks(CHUNK)) {
        s[..CHUNK].copy_from_slice(p);
    }
    let header_tag = [7u8; 16];
    let start = Instant::now();
    for (b, batch) in laid_out.chunks_mut(64 * slot).enumerate() {
        let mut prefixes = Vec::with_capacity(64);
        for (i, s) in batch.chunks_mut(slot).enumerate() {
            let index = (b * 64 + i) as u64;
            let mut counter = [0u8; 16];
            counter[8..].copy_from_slice(&(index * (CHUNK as u64 / 16)).to_be_bytes());
            sm4.ctr_apply(&counter, &mut s[..CHUNK]);
            let mut prefix = [0u8; 9];
            prefix[..8].copy_from_slice(&index.to_be_bytes());
            prefixes.push(prefix);
        }
        let messages: Vec<[&[u8]; 3]> = batch
            .chunks(slot)
            .zip(&prefixes)
            .map(|(s, p)| [&header_tag[..], &p[..], &s[..CHUNK]])
            .collect();
        let messages: Vec<&[&[u8]]> = messages.iter().map(|m| &m[..]).collect();
        let tags = mac.cmac_many(&messages);
        for (s, tag) in batch.chunks_mut(slot).zip(tags) {
            s[CHUNK..].copy_from_slice(&tag);
        }
    }
    println!("vcw-seal-crypto {:8.1} MB/s", mb_per_s(LEN, start));
    std::hint::black_box(&laid_out);
}
