//! The privacy figures for scripts/bench: audit appends per second into a SQLite catalog
//! (one writer, then 8 concurrent ones: every append is its own transaction, as an
//! access record is); the time to verify a chain of a million records (hashing and
//! checks, in memory: what `vcw audit verify` spends per record); and the cost of
//! revoking one subject in a segment cache of a million entries. Prints
//! `name count seconds` lines.

use std::time::Instant;

use vcw::audit::{ChainCheck, Entry, GENESIS, Record};
use vcw::catalog::Catalog;

fn entry(n: usize) -> Entry {
    Entry {
        actor: format!("token-{}", n % 7),
        action: "video.read.segment".into(),
        object: format!("{n:032x}"),
        result: "ok".into(),
        subject: Some(format!("{:064x}", n % 1000)),
        request_id: None,
    }
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let catalog = Catalog::open(dir.path()).await?;
        let n = 2000;
        let start = Instant::now();
        for i in 0..n {
            catalog.audit(entry(i)).await?;
        }
        println!("append_serial {n} {:.4}", start.elapsed().as_secs_f64());
        let start = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let catalog = catalog.clone();
                tokio::spawn(async move {
                    for i in 0..n / 8 {
                        catalog.audit(entry(t * 10_000 + i)).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        println!("append_concurrent {n} {:.4}", start.elapsed().as_secs_f64());
        anyhow::Ok(())
    })?;

    let n = 1_000_000;
    let mut prev = GENESIS;
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let r = Record::chain(entry(i), &prev, i as i64 + 1, i as i64);
            prev = vcw::hex::decode(&r.hash)
                .and_then(|h| h.try_into().ok())
                .unwrap_or(GENESIS);
            r
        })
        .collect();
    let start = Instant::now();
    let mut check = ChainCheck::new(&[], |_| true).map_err(|e| anyhow::anyhow!("{e}"))?;
    for r in &records {
        check
            .push(r, |_| None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let verified = check.finish().map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "verify {} {:.4}",
        verified.records,
        start.elapsed().as_secs_f64()
    );

    // A million cached entries: 10,000 subjects with 100 segments each.
    let cache = vcw::cache::SegmentCache::new(u64::MAX, std::time::Duration::from_secs(3600));
    let until = vcw::domain::clock::now_ms() + 3_600_000;
    let tiny = std::sync::Arc::new(zeroize::Zeroizing::new(vec![0u8; 16]));
    for subject in 0..10_000u32 {
        let name = format!("{subject:064x}");
        let generation = cache.generation(&name);
        for object in 0..100u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&object.to_be_bytes());
            cache.insert(&name, &id, tiny.clone(), generation, until);
        }
    }
    cache.maintain();
    let start = Instant::now();
    let removed = cache.revoke(&format!("{:064x}", 4242));
    println!(
        "revoke_in_1m {removed} {:.6}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
