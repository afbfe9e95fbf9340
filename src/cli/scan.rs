//! `vcw scan FILE...`

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{GlobalArgs, Outcome, report_error, settings};
use crate::inference::Classifier;
use crate::media::MediaSource;
use crate::report::{SCAN_HEADER, scan_row};
use crate::scan::scan_file;

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Video files to scan.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Longest stretch of video (seconds) that may go unexamined [default: 1.0].
    #[arg(long, value_name = "SECONDS")]
    pub max_gap: Option<f64>,
    /// Uniform minimum sampling rate, frames per second of video [default: 1.0].
    #[arg(long, value_name = "FPS")]
    pub min_rate: Option<f64>,
    /// Also sample on scene changes whose mean luma change exceeds this fraction (0-1).
    #[arg(long, value_name = "FRACTION")]
    pub scene_threshold: Option<f64>,
    /// Do not sample keyframes for their own sake (the rate and gap bounds still apply).
    #[arg(long)]
    pub no_keyframes: bool,
    /// After judging, segment, seal and store each video here: a directory or
    /// s3://BUCKET/PREFIX (S3 settings in the [s3] config section or VCW__S3__*).
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX", requires = "subject")]
    pub store: Option<String>,
    /// Data subject the videos belong to (hashed before use; needed with --store).
    #[arg(long, requires = "store")]
    pub subject: Option<String>,
    /// Target segment length in seconds (segments are cut on keyframes).
    #[arg(long, default_value_t = 4.0, value_name = "SECONDS")]
    pub segment_seconds: f64,
    /// Re-encode streams HLS cannot carry (VP8, MPEG-4 Part 2, MJPEG, Vorbis, PCM, ...)
    /// with --store: off (keep only the sealed original), h264 (libx264, GPL) or vp9
    /// (libvpx); audio goes to AAC. Default: server.transcode from the config (off).
    #[arg(long, value_name = "off|h264|vp9")]
    pub transcode: Option<crate::config::Transcode>,
    #[command(flatten)]
    pub vault: super::VaultArgs,
}

pub fn run(global: &GlobalArgs, args: &ScanArgs) -> anyhow::Result<Outcome> {
    let (mut config, policy) = settings(global)?;
    if let Some(g) = args.max_gap {
        config.sampler.max_gap = g;
    }
    if let Some(r) = args.min_rate {
        config.sampler.min_rate = r;
    }
    if let Some(s) = args.scene_threshold {
        config.sampler.scene_threshold = s;
    }
    if args.no_keyframes {
        config.sampler.keyframes = false;
    }
    if let Some(t) = args.transcode {
        config.server.transcode = t;
    }
    config.validate()?;
    crate::media::check_encoders(config.server.transcode).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        args.segment_seconds.is_finite() && args.segment_seconds >= 1.0,
        "--segment-seconds must be at least 1"
    );
    // With --store: the runtime, vault, store and subject hash the videos are stored with.
    let storage = match (&args.store, &args.subject) {
        (Some(uri), Some(subject)) => {
            let (keyring, data_dir) = args.vault.resolve(global)?;
            let rt = super::runtime()?;
            let vault = rt.block_on(crate::vault::Vault::load(&keyring, &data_dir))?;
            let store: std::sync::Arc<dyn crate::storage::BlobStore> =
                std::sync::Arc::from(crate::storage::open_store(uri, &config.s3)?);
            let subject_hash = vault.kms_subject_hash(subject)?;
            Some((
                rt,
                std::sync::Arc::new(vault),
                store,
                subject_hash,
                std::env::temp_dir(),
            ))
        }
        _ => None,
    };
    let mut classifier = Classifier::load(&config.inference)?;
    let interactive = std::io::stdout().is_terminal() && !global.json;
    if !global.json {
        println!("{SCAN_HEADER}");
    }
    let mut worst = Outcome::Allowed;
    for file in &args.files {
        let shown = file.display().to_string();
        let bar = progress_bar(interactive, file);
        let on_progress = |t: f64, end: f64| {
            bar.set_length((end * 1000.0).max(1.0) as u64);
            bar.set_position((t * 1000.0).max(0.0) as u64);
        };
        let source = MediaSource::file(file);
        let result = scan_file(&source, &mut classifier, &config, &policy, &on_progress)
            .map_err(anyhow::Error::from)
            .and_then(|mut report| {
                if let Some((rt, vault, store, subject_hash, tmp_dir)) = &storage {
                    bar.set_message(format!("sealing {}", file.display()));
                    let target = crate::package::StoreTarget {
                        handle: rt.handle(),
                        vault,
                        store,
                        tmp_dir,
                        subject_hash,
                        segment_seconds: args.segment_seconds,
                        transcode: config.server.transcode,
                        attempt: 1,
                    };
                    let video_id = crate::domain::id_hex(&*crate::crypto::random::<16>()?);
                    let manifest =
                        target.store_video(&video_id, &source, &report, &config.limits)?;
                    report.stored = Some(manifest);
                }
                Ok(report)
            });
        bar.finish_and_clear();
        match result {
            Ok(report) => {
                worst = worst.max(report.verdict.into());
                if global.json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("{}", scan_row(&report));
                    if let Some(m) = &report.stored {
                        let hls = format!("{} sealed HLS segments", m.segments.len());
                        let what = match (&m.playlist, &m.original_because) {
                            (Some(_), None) => hls,
                            (Some(_), Some(why)) => format!("{hls} and the original: {why}"),
                            (None, why) => format!(
                                "the sealed original: {}",
                                why.as_deref().unwrap_or("no HLS rendition")
                            ),
                        };
                        println!("  stored as video {} ({what}) in {}", m.video_id, m.store);
                        if let Some(e) = &m.failed_check {
                            worst = Outcome::Failed;
                            eprintln!("vcw: error: {}: {e}", shown);
                        }
                    }
                }
            }
            Err(e) => {
                worst = Outcome::Failed;
                report_error(global.json, &shown, &e);
            }
        }
    }
    Ok(worst)
}

/// A per-file bar in milliseconds of video; hidden unless stdout is a terminal.
fn progress_bar(interactive: bool, file: &std::path::Path) -> ProgressBar {
    if !interactive {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(1);
    let style = ProgressStyle::with_template(
        "{spinner} {msg} [{bar:30}] {percent:>3}% ({elapsed}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(file.display().to_string());
    bar
}
