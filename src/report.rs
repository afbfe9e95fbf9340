//! The result documents `vcw scan --json` and `vcw classify --json` print (schema in
//! docs/scan-json.md), and their human-readable table form.

use serde::{Deserialize, Serialize};

use crate::inference::{Detection, Face, FrameSignals, ModelInfo};
use crate::media::{Probe, SampleReason};
use crate::policy::{Action, Judgement, Reason};

/// One examined frame.
#[derive(Clone, Debug, Serialize)]
pub struct FrameRecord {
    /// Seconds from the start of the video.
    pub t: f64,
    /// Why the sampler took it.
    pub sampled_because: SampleReason,
    pub nsfw: f32,
    pub detections: Vec<Detection>,
    pub faces: Vec<Face>,
}

impl FrameRecord {
    pub fn signals(&self) -> FrameSignals {
        FrameSignals {
            nsfw: self.nsfw,
            detections: self.detections.clone(),
            faces: self.faces.clone(),
        }
    }
}

/// Sampling facts an auditor needs to trust "nothing was skipped".
#[derive(Clone, Debug, Serialize)]
pub struct SamplingInfo {
    pub max_gap: f64,
    pub min_rate: f64,
    pub keyframes_only: bool,
    pub decoded_frames: u64,
    /// Packets read but not decoded: the rest of a GOP once no sample can fall in it.
    pub skipped_packets: u64,
    pub decode_errors: u64,
    /// Longest stretch between consecutive examined timestamps (including the head and
    /// tail of the video), seconds.
    pub largest_gap: f64,
}

/// `vcw scan --json`: one document per video.
#[derive(Clone, Debug, Serialize)]
pub struct ScanReport {
    pub file: String,
    pub verdict: Action,
    pub escalate: bool,
    pub reasons: Vec<Reason>,
    /// Every timestamp examined, seconds, ascending.
    pub sampled: Vec<f64>,
    pub frames: Vec<FrameRecord>,
    pub models: Vec<ModelInfo>,
    pub policy_version: String,
    pub video: Probe,
    pub sampling: SamplingInfo,
    pub vcw_version: &'static str,
    /// With `--store`: what was sealed and stored (segments, object ids, key ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<crate::domain::Manifest>,
}

/// `vcw classify --json`: one document per image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageReport {
    pub file: String,
    pub verdict: Action,
    pub escalate: bool,
    pub reasons: Vec<Reason>,
    pub width: usize,
    pub height: usize,
    pub nsfw: f32,
    pub detections: Vec<Detection>,
    pub faces: Vec<Face>,
    pub models: Vec<ModelInfo>,
    pub policy_version: String,
}

/// What `--json` prints for a file that could not be processed.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorReport<'a> {
    pub file: &'a str,
    pub error: String,
}

impl ImageReport {
    pub fn new(
        file: String,
        width: usize,
        height: usize,
        signals: FrameSignals,
        judgement: Judgement,
        models: Vec<ModelInfo>,
        policy_version: String,
    ) -> Self {
        Self {
            file,
            verdict: judgement.verdict,
            escalate: judgement.escalate,
            reasons: judgement.reasons,
            width,
            height,
            nsfw: signals.nsfw,
            detections: signals.detections,
            faces: signals.faces,
            models,
            policy_version,
        }
    }
}

/// Reasons as `code start-end, start-end; code ...`.
fn reasons_text(reasons: &[Reason]) -> String {
    if reasons.is_empty() {
        return "-".into();
    }
    reasons
        .iter()
        .map(|r| {
            let ranges: Vec<String> = r
                .ranges
                .iter()
                .map(|[a, b]| {
                    if a == b {
                        format!("{a:.1}s")
                    } else {
                        format!("{a:.1}-{b:.1}s")
                    }
                })
                .collect();
            format!("{} {}", r.code, ranges.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub const SCAN_HEADER: &str =
    "FILE                                VERDICT   ESC  DURATION  FRAMES  REASONS";

pub fn scan_row(r: &ScanReport) -> String {
    format!(
        "{:<35} {:<9} {:<4} {:>7.1}s  {:>6}  {}",
        shorten(&r.file, 35),
        r.verdict.to_string(),
        if r.escalate { "YES" } else { "-" },
        r.video.duration,
        r.sampled.len(),
        reasons_text(&r.reasons)
    )
}

pub const IMAGE_HEADER: &str =
    "FILE                                VERDICT   ESC  NSFW    DETECTIONS  FACES (age, p_minor)";

pub fn image_row(r: &ImageReport) -> String {
    let faces: Vec<String> = r
        .faces
        .iter()
        .map(|f| match (f.age, f.p_minor, &f.unjudgeable) {
            (Some(a), Some(p), _) => format!("{a:.0}y {p:.2}"),
            (_, _, Some(why)) => why.clone(),
            _ => "-".into(),
        })
        .collect();
    format!(
        "{:<35} {:<9} {:<4} {:<7.3} {:>10}  {}",
        shorten(&r.file, 35),
        r.verdict.to_string(),
        if r.escalate { "YES" } else { "-" },
        r.nsfw,
        r.detections.len(),
        if faces.is_empty() {
            "-".into()
        } else {
            faces.join(", ")
        }
    )
}

/// Keeps the end of long paths, where the file name is.
fn shorten(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        s.to_string()
    } else {
        let tail: String = s.chars().skip(n - (width - 1)).collect();
        format!("…{tail}")
    }
}
