//! Prints the worked test vector documented in `sealed-format.md`.
//! Run with `cargo run --example sealed_test_vector`.

use vcw::crypto::primitives::hkdf_sm3;
use vcw::crypto::{DataKey, HEADER_LEN, SealParams, TAG_LEN, seal};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn seq(start: u8) -> [u8; 16] {
    std::array::from_fn(|i| start + i as u8)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = DataKey::from_bytes(seq(0x00));
    let params = SealParams {
        object_id: seq(0x10),
        data_key_id: seq(0x20),
        subject_key_id: seq(0x30),
        subject_key_version: 7,
        kek_version: 3,
        chunk_size: 32,
    };
    let nonce = seq(0xa0);
    let plaintext = b"vcw sealed v1 test vector: three chunks of 32, 32 and 4 bytes (fin).";
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let mut sealed = Vec::new();
    let summary = runtime.block_on(seal(
        &key,
        &params,
        Some(nonce),
        &plaintext[..],
        &mut sealed,
    ))?;
    println!("plaintext ({} bytes) = {}", plaintext.len(), hex(plaintext));
    let mut okm = [0u8; 32];
    hkdf_sm3(
        key.expose(),
        &nonce,
        &[b"vcw-sealed-v1", &params.object_id],
        &mut okm,
    )?;
    println!("K_enc = {}\nK_mac = {}", hex(&okm[..16]), hex(&okm[16..]));
    println!("header = {}", hex(&sealed[..HEADER_LEN]));
    let stride = params.chunk_size as usize + TAG_LEN;
    for (i, chunk) in sealed[HEADER_LEN..].chunks(stride).enumerate() {
        let (ct, tag) = chunk.split_at(chunk.len() - TAG_LEN);
        println!("chunk {i}: ct = {}\n         tag = {}", hex(ct), hex(tag));
    }
    println!("sealed_len = {}", summary.sealed_len);
    Ok(())
}
