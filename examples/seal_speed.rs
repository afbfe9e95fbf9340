//! Throughput of seal/open (and the raw primitives they are made of) on
//! 64 MiB held in memory. Run with `cargo run --release --example seal_speed`.

use std::time::Instant;

use vcw::crypto::primitives::{cmac_sm4, sm4_ctr_apply};
use vcw::crypto::{DataKey, SealParams, open, seal};

const LEN: usize = 64 * 1024 * 1024;

fn mb_per_s(bytes: usize, start: Instant) -> f64 {
    bytes as f64 / 1e6 / start.elapsed().as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let plaintext: Vec<u8> = (0..LEN).map(|i| (i * 31 + i / 4099) as u8).collect();
    let key = DataKey::from_bytes([0x42; 16]);

    let mut buf = plaintext.clone();
    let start = Instant::now();
    sm4_ctr_apply(&[1; 16], &[2; 16], &mut buf);
    println!("sm4-ctr   {:8.1} MB/s", mb_per_s(LEN, start));

    let start = Instant::now();
    std::hint::black_box(cmac_sm4(&[1; 16], &[&buf]));
    println!("cmac-sm4  {:8.1} MB/s", mb_per_s(LEN, start));

    let mut sealed = Vec::with_capacity(LEN + LEN / 1000 + 4096);
    let params = SealParams::default();
    let start = Instant::now();
    runtime.block_on(seal(&key, &params, None, &plaintext[..], &mut sealed))?;
    println!("seal      {:8.1} MB/s", mb_per_s(LEN, start));

    let mut opened = Vec::with_capacity(LEN);
    let start = Instant::now();
    runtime.block_on(open(&key, &sealed[..], &mut opened))?;
    println!("open      {:8.1} MB/s", mb_per_s(LEN, start));
    assert!(opened == plaintext, "round trip mismatch");
    Ok(())
}
