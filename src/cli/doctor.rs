//! `vcw doctor`: checks a deployment and says what to fix, one line per check (or JSON);
//! exit status 2 when anything fails.

use std::path::Path;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::{GlobalArgs, Outcome, VaultArgs, runtime};
use crate::catalog::CatalogError;
use crate::config::Config;

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub vault: VaultArgs,
}

/// One check: what was found, and on failure what to do.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Anything that reaches over the network gets this long.
const REACH: Duration = Duration::from_secs(5);

pub fn run(global: &GlobalArgs, args: &DoctorArgs) -> anyhow::Result<Outcome> {
    let (config, _) = super::settings(global)?;
    let (keyring, data_dir) = args.vault.resolve(global)?;
    let mut checks = vec![ffmpeg(&config), onnx_runtime(&config)];
    checks.extend(models(&config.inference.models_dir));
    checks.push(sm4());
    checks.push(keyring_check(&keyring));
    let rt = runtime()?;
    checks.extend(rt.block_on(reachability(&config, &data_dir)));
    let staging = match config.cluster.database_url {
        Some(_) => std::env::temp_dir(),
        None => data_dir.join("tmp"),
    };
    checks.push(disk(&staging, config.limits.max_file_size));

    if global.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for c in &checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            println!("{mark} {:<10} {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("     {:<10} fix: {fix}", "");
            }
        }
    }
    Ok(if checks.iter().all(|c| c.ok) {
        Outcome::Allowed
    } else {
        Outcome::Failed
    })
}

/// The linked FFmpeg, its licence (GPL or LGPL matters to whoever distributes vcw), and
/// the transcoding encoders when `server.transcode` asks for them.
fn ffmpeg(config: &Config) -> Check {
    crate::media::init();
    let v = ffmpeg_next::util::version();
    let version = format!("libavutil {}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff);
    let licence = ffmpeg_next::codec::license();
    let gpl = if licence.contains("GPL") && !licence.contains("LGPL") {
        "a binary linked against it is GPL-bound"
    } else {
        "LGPL: remuxing and vp9 transcoding; no H.264 encoder"
    };
    match crate::media::check_encoders(config.server.transcode) {
        Ok(()) => pass("ffmpeg", format!("{version}, licence {licence} ({gpl})")),
        Err(e) => fail(
            "ffmpeg",
            format!("{version}, licence {licence}: {e}"),
            "install an FFmpeg with that encoder, or set server.transcode = \"off\"",
        ),
    }
}

fn onnx_runtime(config: &Config) -> Check {
    match crate::inference::runtime_info(&config.inference) {
        Ok(info) => {
            let lib = &config.inference.ort_library;
            // The library's file name carries its version (libonnxruntime.so.1.32.0).
            let name = lib.file_name().map(|n| n.to_string_lossy().into_owned());
            let version =
                (name.as_deref().and_then(|n| n.split_once(".so."))).map_or("", |(_, v)| v);
            let build = info.trim_start_matches("ORT Build Info: ");
            let detail = format!("ONNX Runtime {version} ({build}; {})", lib.display());
            pass("onnx", detail)
        }
        Err(e) => fail(
            "onnx",
            e.to_string(),
            "run `make setup`, or set inference.ort_library (VCW__INFERENCE__ORT_LIBRARY)",
        ),
    }
}

/// Each model file against the manifest compiled into this binary.
fn models(dir: &Path) -> Vec<Check> {
    let entries = match crate::inference::entries() {
        Ok(e) => e,
        Err(e) => return vec![fail("models", e.to_string(), "rebuild vcw")],
    };
    entries
        .iter()
        .map(|entry| match crate::inference::verified_file(dir, entry) {
            Ok((path, _)) => pass(
                "model",
                format!(
                    "{} sha256 {} ({})",
                    entry.name,
                    &entry.sha256[..16],
                    path.display()
                ),
            ),
            Err(e) => fail(
                "model",
                format!("{}: {e}", entry.name),
                format!(
                    "run `make models`, or point inference.models_dir at a directory with {}",
                    entry.file
                ),
            ),
        })
        .collect()
}

/// Which constant-time SM4 path seals here, and whether `VCW_SM4_IMPL` asks
/// for something this CPU cannot do.
fn sm4() -> Check {
    use crate::crypto::primitives::{SM4_IMPL_ENV, Sm4Impl};
    let used = Sm4Impl::selected().name();
    let supported: Vec<&str> = Sm4Impl::ALL
        .into_iter()
        .filter(|i| i.is_supported())
        .map(Sm4Impl::name)
        .collect();
    let supported = supported.join(", ");
    match Sm4Impl::forced() {
        Err(why) => fail(
            "sm4",
            format!("{why}; sealing uses {used}"),
            format!("unset {SM4_IMPL_ENV}, or set it to one this CPU runs: {supported}"),
        ),
        Ok(Some(_)) => pass(
            "sm4",
            format!("{used}, constant-time (forced by {SM4_IMPL_ENV}; this CPU runs {supported})"),
        ),
        Ok(None) if used == Sm4Impl::Portable.name() => pass(
            "sm4",
            "portable bitsliced, constant-time but about 30x slower than the SIMD paths: \
             this CPU has neither GFNI nor AES-NI with AVX2",
        ),
        Ok(None) => pass(
            "sm4",
            format!("{used}, constant-time (this CPU runs {supported})"),
        ),
    }
}

fn keyring_check(path: &Path) -> Check {
    if !path.exists() {
        return fail(
            "keyring",
            format!("{} does not exist", path.display()),
            format!(
                "`vcw keys init --keyring {}` (vcw serve creates one on first start)",
                path.display()
            ),
        );
    }
    match crate::crypto::LocalKms::load(path) {
        Ok(kms) => pass(
            "keyring",
            format!(
                "{}: mode 0600, KEK version {} current",
                path.display(),
                crate::crypto::Kms::current_version(&kms)
            ),
        ),
        Err(crate::crypto::KeyError::Permissions { path, .. }) => fail(
            "keyring",
            format!("{path} is readable by group or others"),
            format!("chmod 600 {path}"),
        ),
        Err(e) => fail(
            "keyring",
            e.to_string(),
            "restore the keyring from its backup or Secret",
        ),
    }
}

/// Catalog, queue and store answer; the host's clock agrees with the catalog's.
async fn reachability(config: &Config, data_dir: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let sqlite = data_dir.join("catalog.sqlite");
    let catalog = match &config.cluster.database_url {
        None if !sqlite.exists() => {
            checks.push(pass(
                "catalog",
                format!(
                    "{} not created yet (vcw serve creates it)",
                    sqlite.display()
                ),
            ));
            None
        }
        _ => match tokio::time::timeout(REACH, super::open_catalog(config, data_dir)).await {
            Ok(Ok(c)) => {
                let what = match config.cluster.database_url {
                    Some(_) => "PostgreSQL (cluster.database_url)".to_string(),
                    None => sqlite.display().to_string(),
                };
                checks.push(pass("catalog", format!("{what} answers")));
                Some(c)
            }
            Ok(Err(e)) => {
                let newer = e
                    .chain()
                    .any(|c| matches!(c.downcast_ref(), Some(CatalogError::NewerSchema { .. })));
                let fix = if newer {
                    "run the vcw that upgraded the catalog, or restore the catalog's backup from before that upgrade"
                } else {
                    "start the database, or fix cluster.database_url (VCW__CLUSTER__DATABASE_URL)"
                };
                checks.push(fail("catalog", format!("{e:#}"), fix));
                None
            }
            Err(_) => {
                checks.push(fail(
                    "catalog",
                    "no answer within 5 s",
                    "check that the database is up and reachable from here",
                ));
                None
            }
        },
    };
    if let Some(catalog) = &catalog {
        checks.push(match catalog.now().await {
            Ok(db) => {
                let skew = (crate::domain::clock::now_ms() - db).abs();
                if skew <= 2_000 {
                    pass("clock", format!("within {skew} ms of the catalog's"))
                } else {
                    fail("clock", format!("{skew} ms away from the catalog's clock (consent expiry is checked on this one, leases on that one)"), "synchronise both hosts with NTP")
                }
            }
            Err(e) => fail("clock", e.to_string(), "see the catalog check"),
        });
    }
    checks.push(match &config.cluster.nats_url {
        None => pass("queue", "the catalog (embedded)"),
        Some(url) => match tokio::time::timeout(REACH, async_nats::connect(url)).await {
            Ok(Ok(_)) => pass("queue", format!("NATS at {url} answers")),
            Ok(Err(e)) => fail(
                "queue",
                format!("NATS at {url}: {e}"),
                "start NATS, or fix cluster.nats_url",
            ),
            Err(_) => fail(
                "queue",
                format!("NATS at {url}: no answer within 5 s"),
                "check that NATS is up and reachable from here",
            ),
        },
    });
    let uri = (config.server.store.clone())
        .unwrap_or_else(|| data_dir.join("objects").display().to_string());
    checks.push(match crate::storage::open_store(&uri, &config.s3) {
        Err(e) => fail("store", e.to_string(), "fix server.store and [s3]"),
        Ok(store) => match tokio::time::timeout(REACH, store.exists("doctor-probe")).await {
            Ok(Ok(_)) => pass("store", format!("{} answers", store.describe())),
            Ok(Err(e)) => fail(
                "store",
                e.to_string(),
                "check the bucket, endpoint and credentials ([s3])",
            ),
            Err(_) => fail(
                "store",
                "no answer within 5 s",
                "check that the store is reachable from here",
            ),
        },
    });
    checks
}

/// Free space where uploads are staged (sealed): a full disk refuses uploads.
fn disk(dir: &Path, max_upload: u64) -> Check {
    let probe = std::iter::successors(Some(dir), |d| d.parent()).find(|d| d.exists());
    let Some(probe) = probe else {
        return fail(
            "disk",
            format!("{}: no such directory", dir.display()),
            "create it",
        );
    };
    match rustix::fs::statvfs(probe) {
        Ok(s) => {
            let free = s.f_bavail.saturating_mul(s.f_frsize);
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            let detail = format!(
                "{:.1} GiB free for staging in {} (largest upload {:.1} GiB)",
                gib(free),
                probe.display(),
                gib(max_upload)
            );
            if free >= (1 << 30) {
                pass("disk", detail)
            } else {
                fail(
                    "disk",
                    detail,
                    "free space, or point the data dir (or TMPDIR in a cluster) elsewhere",
                )
            }
        }
        Err(e) => fail(
            "disk",
            format!("{}: {e}", probe.display()),
            "check the directory",
        ),
    }
}
