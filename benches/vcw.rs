//! Criterion benchmarks: Throughput in frames for the sampler on the 1080p clip, each
//! model, and a scan end to end; in bytes for sealing, opening, upload ingest and the SM4 paths. Run with `make bench` (which generates the clips and also runs
//! scripts/bench, the side-by-side comparison with ffmpeg and the reference packages).

use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vcw::config::Config;
use vcw::frame::Frame;
use vcw::inference::Classifier;
use vcw::media::{MediaSource, Sampler};
use vcw::policy::Policy;

fn asset(relative: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    assert!(
        p.is_file(),
        "{} missing: run `make bench` (it generates the clips)",
        p.display()
    );
    p
}

/// The first `n` frames the sampler takes from `clip`.
fn frames(config: &Config, clip: &Path, n: usize) -> Vec<Frame> {
    let sampler = Sampler {
        config: &config.sampler,
        limits: &config.limits,
    };
    let mut out = Vec::new();
    let _ = sampler.run(
        &MediaSource::file(clip),
        |f| {
            out.push(f.image);
            if out.len() < n {
                Ok(())
            } else {
                Err("enough".into())
            }
        },
        |_, _| {},
    );
    out
}

fn sampler(c: &mut Criterion) {
    let clip = asset("samples/generated/1080p_2min.mp4");
    let mut config = Config::default();
    // Keyframes every 2 s satisfy a 2 s bound: the decoder skips every other frame,
    // the same work as the `ffmpeg -skip_frame nokey` peer in scripts/bench.
    config.sampler.max_gap = 2.0;
    config.sampler.min_rate = 0.5;
    let s = Sampler {
        config: &config.sampler,
        limits: &config.limits,
    };
    let clip = MediaSource::file(&clip);
    let count = s
        .run(&clip, |_| Ok(()), |_, _| {})
        .expect("sampler runs")
        .sampled_frames;
    let mut g = c.benchmark_group("sampler");
    g.sample_size(10);
    g.throughput(Throughput::Elements(count));
    g.bench_function("1080p_2min_keyframes_rgb", |b| {
        b.iter(|| s.run(&clip, |_| Ok(()), |_, _| {}).expect("sampler runs"))
    });
    g.finish();
}

fn models(c: &mut Criterion) {
    let config = Config::default();
    let mut classifier = Classifier::load(&config.inference).expect("models load (make setup)");
    let hd = frames(&config, &asset("samples/generated/1080p_2min.mp4"), 8);
    let faces = frames(&config, &asset("samples/carphone_pristine.mp4"), 4);
    let hd_refs: Vec<&Frame> = hd.iter().collect();
    let face_refs: Vec<&Frame> = faces.iter().collect();
    let face_dets = classifier.detect(&face_refs).expect("detect");
    let found = classifier.find_faces(&face_refs).expect("centerface");
    let n_faces: usize = found.iter().map(Vec::len).sum();

    let mut g = c.benchmark_group("models");
    g.sample_size(10);
    g.throughput(Throughput::Elements(hd.len() as u64));
    g.bench_function("open_nsfw_1080p_batch8", |b| {
        b.iter(|| classifier.nsfw(&hd_refs).expect("nsfw"))
    });
    g.bench_function("nudenet_1080p_batch8", |b| {
        b.iter(|| classifier.detect(&hd_refs).expect("detect"))
    });
    g.bench_function("centerface_1080p_batch8", |b| {
        b.iter(|| classifier.find_faces(&hd_refs).expect("centerface"))
    });
    g.throughput(Throughput::Elements(n_faces as u64));
    g.bench_function("age_per_face", |b| {
        b.iter(|| {
            classifier
                .judge_faces(&face_refs, &found, &face_dets)
                .expect("faces")
        })
    });
    g.finish();
}

fn scan(c: &mut Criterion) {
    let config = Config::default();
    let policy = Policy::builtin();
    let mut classifier = Classifier::load(&config.inference).expect("models load (make setup)");
    let clip = MediaSource::file(&asset("samples/bikes.mp4"));
    let report =
        vcw::scan::scan_file(&clip, &mut classifier, &config, &policy, &|_, _| {}).expect("scan");
    let mut g = c.benchmark_group("scan");
    g.sample_size(10);
    g.throughput(Throughput::Elements(report.sampled.len() as u64));
    g.bench_function("bikes_10s_end_to_end", |b| {
        b.iter(|| {
            vcw::scan::scan_file(&clip, &mut classifier, &config, &policy, &|_, _| {})
                .expect("scan")
        })
    });
    g.finish();
}

/// Seal and open in memory, 1 MiB and 64 MiB (Throughput in bytes).
fn sealed(c: &mut Criterion) {
    use vcw::crypto::{DataKey, SealParams, open, seal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let key = DataKey::from_bytes([7; 16]);
    let params = SealParams::default();
    let mut g = c.benchmark_group("sealed");
    g.sample_size(10);
    for (name, len) in [("1MiB", 1usize << 20), ("64MiB", 64 << 20)] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut sealed = Vec::new();
        rt.block_on(seal(&key, &params, None, &plain[..], &mut sealed))
            .expect("seal");
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("seal_{name}"), |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(sealed.len());
                rt.block_on(seal(&key, &params, None, &plain[..], &mut out))
                    .expect("seal")
            })
        });
        g.bench_function(format!("open_{name}"), |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(len);
                rt.block_on(open(&key, &sealed[..], &mut out))
                    .expect("open")
            })
        });
    }
    g.finish();
}

/// Upload ingest without the HTTP layer: a 64 MiB body sealed for its subject through
/// a staged file on disk and moved into a filesystem store, what a PUT does with its
/// body. Next to it, sealing the same bytes into memory: the target is ingest at
/// 0.8x seal or better. The directories are under the build's target dir, on disk, not
/// a tmpfs.
fn ingest(c: &mut Criterion) {
    use vcw::crypto::{DataKey, LocalKms, SealParams, seal};
    use vcw::storage::{BlobStore as _, FsStore};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let (keyring, data, tmp) = (
        dir.path().join("keyring.toml"),
        dir.path().join("data"),
        dir.path().join("tmp"),
    );
    LocalKms::init(&keyring).expect("keyring");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let vault = rt
        .block_on(vcw::vault::Vault::load(&keyring, &data))
        .expect("vault");
    let store = FsStore::new(dir.path().join("store")).expect("store");
    let len = 64usize << 20;
    let body: Vec<u8> = (0..len).map(|i| (i * 11 + i / 509) as u8).collect();
    let subject = "ab".repeat(32);
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("stage_64MiB_to_fs_store", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            for i in 0..iters {
                let key = format!("uploads/bench/{i}");
                let start = std::time::Instant::now();
                rt.block_on(vcw::staging::stage_part(
                    &vault,
                    &store,
                    &tmp,
                    &subject,
                    &key,
                    0,
                    &body[..],
                ))
                .expect("stage");
                spent += start.elapsed();
                rt.block_on(store.delete(&key)).expect("delete");
            }
            spent
        })
    });
    let key = DataKey::from_bytes([7; 16]);
    g.bench_function("seal_64MiB_to_memory", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(len + len / 1000 + 4096);
            rt.block_on(seal(
                &key,
                &SealParams::default(),
                None,
                &body[..],
                &mut out,
            ))
            .expect("seal")
        })
    });
    g.finish();
}

/// Every SM4 path this CPU runs: CTR over 1 MiB, CMAC of one 64 KiB chunk (serial,
/// what a lone range read costs), and of 64 such chunks side by side (what seal and
/// open do per core).
fn sm4(c: &mut Criterion) {
    use vcw::crypto::primitives::{Sm4Impl, Sm4Key};
    let data: Vec<u8> = (0..64 << 16)
        .map(|i: usize| (i * 13 + i / 977) as u8)
        .collect();
    let chunks: Vec<[&[u8]; 1]> = data.chunks(1 << 16).map(|c| [c]).collect();
    let lanes: Vec<&[&[u8]]> = chunks.iter().map(|m| &m[..]).collect();
    let mut g = c.benchmark_group("sm4");
    g.sample_size(10);
    for imp in Sm4Impl::ALL.into_iter().filter(|i| i.is_supported()) {
        let key = Sm4Key::with_impl(&[9; 16], imp);
        let mut buf = data[..1 << 20].to_vec();
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(format!("ctr_1MiB_{}", imp.name()), |b| {
            b.iter(|| key.ctr_apply(&[3; 16], &mut buf))
        });
        g.throughput(Throughput::Bytes(1 << 16));
        g.bench_function(format!("cmac_serial_64KiB_{}", imp.name()), |b| {
            b.iter(|| key.cmac(lanes[0]))
        });
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(format!("cmac_64_lanes_of_64KiB_{}", imp.name()), |b| {
            b.iter(|| key.cmac_many(&lanes))
        });
    }
    g.finish();
}

criterion_group!(benches, sampler, models, scan, sealed, ingest, sm4);
criterion_main!(benches);
