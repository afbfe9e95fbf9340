//! One video end to end: sample (on its own thread), classify in batches, judge.
//!
//! Decoding and inference overlap in both passes (the samples, then the dense look
//! around suspicious ones): a sampler thread decodes while the caller's thread runs the
//! models, with a bounded channel between them so memory stays flat.

use std::sync::mpsc;

use crate::config::Config;
use crate::inference::{Classifier, InferenceError};
use crate::media::{MediaError, MediaSource, SampledFrame, Sampler};
use crate::policy::Policy;
use crate::report::{FrameRecord, SamplingInfo, ScanReport};

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("{path}: {source}")]
    Inference {
        path: String,
        source: InferenceError,
    },
}

/// Rounds to microseconds so that `pts * time_base` noise does not leak into reports.
fn micro(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

/// Scans one video. `progress` receives the decode position and the expected end, seconds.
pub fn scan_file(
    source: &MediaSource,
    classifier: &mut Classifier,
    config: &Config,
    policy: &Policy,
    progress: &(dyn Fn(f64, f64) + Sync),
) -> Result<ScanReport, ScanError> {
    let shown = source.name().to_string();
    let batch_size = config.inference.batch_size;
    let sampler = Sampler {
        config: &config.sampler,
        limits: &config.limits,
    };
    let (stats, mut records) = sample_and_classify(classifier, batch_size, &shown, |sink| {
        sampler.run(source, sink, progress)
    })?;

    let neighbours = look_around(source, classifier, config, policy, &records, &shown)?;
    records.extend(neighbours);
    records.sort_by(|a, b| a.t.total_cmp(&b.t));
    records.dedup_by(|b, a| (a.t - b.t).abs() < 1e-6);
    let sampled: Vec<f64> = records.iter().map(|r| r.t).collect();
    let signals: Vec<_> = records.iter().map(FrameRecord::signals).collect();
    let judged: Vec<(f64, &_)> = sampled.iter().copied().zip(signals.iter()).collect();
    let judgement = policy.judge_video(&judged);
    let largest_gap = largest_gap(&sampled, stats.last_frame);
    Ok(ScanReport {
        file: shown,
        verdict: judgement.verdict,
        escalate: judgement.escalate,
        reasons: judgement.reasons,
        sampled,
        frames: records,
        models: classifier.models().to_vec(),
        policy_version: policy.version.clone(),
        video: stats.probe,
        sampling: SamplingInfo {
            max_gap: config.sampler.max_gap,
            min_rate: config.sampler.min_rate,
            keyframes_only: stats.keyframes_only,
            decoded_frames: stats.decoded_frames,
            skipped_packets: stats.skipped_packets,
            decode_errors: stats.decode_errors,
            largest_gap: micro(largest_gap),
        },
        vcw_version: env!("CARGO_PKG_VERSION"),
        stored: None,
    })
}

/// Runs `sample` on its own thread while this thread classifies the frames it sends,
/// in batches, through a bounded channel: decoding overlaps inference and memory stays
/// flat. Returns the sampler's result and one record per frame classified.
fn sample_and_classify<T: Send>(
    classifier: &mut Classifier,
    batch_size: usize,
    path: &str,
    sample: impl FnOnce(&mut dyn FnMut(SampledFrame) -> Result<(), String>) -> Result<T, MediaError>
    + Send,
) -> Result<(T, Vec<FrameRecord>), ScanError> {
    let (tx, rx) = mpsc::sync_channel::<SampledFrame>(batch_size * 2);
    let mut records = Vec::new();
    let mut inference_error = None;
    let sampled = std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            sample(&mut |frame| tx.send(frame).map_err(|_| "inference stopped".to_string()))
        });
        let mut batch = Vec::with_capacity(batch_size);
        for frame in rx.iter() {
            batch.push(frame);
            if batch.len() == batch_size
                && let Err(e) = classify(classifier, &mut batch, &mut records)
            {
                inference_error = Some(e);
                break;
            }
        }
        if inference_error.is_none()
            && !batch.is_empty()
            && let Err(e) = classify(classifier, &mut batch, &mut records)
        {
            inference_error = Some(e);
        }
        // Dropping the receiver unblocks a sampler still sending.
        drop(rx);
        worker.join()
    });
    if let Some(source) = inference_error {
        return Err(ScanError::Inference {
            path: path.to_string(),
            source,
        });
    }
    match sampled {
        Ok(result) => Ok((result?, records)),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs the models over `batch` (emptying it) and appends one record per frame to `out`.
fn classify(
    classifier: &mut Classifier,
    batch: &mut Vec<SampledFrame>,
    out: &mut Vec<FrameRecord>,
) -> Result<(), InferenceError> {
    let images: Vec<_> = batch.iter().map(|f| &f.image).collect();
    let signals = classifier.classify(&images)?;
    for (f, s) in batch.drain(..).zip(signals) {
        out.push(FrameRecord {
            t: micro(f.t),
            sampled_because: f.reason,
            nsfw: s.nsfw,
            detections: s.detections,
            faces: s.faces,
        });
    }
    Ok(())
}

/// At most this many suspicious moments get the dense look (the strongest ones), so a
/// video that is explicit throughout costs a bounded number of extra frames.
const MAX_SUSPICIOUS: usize = 16;

/// Decodes and classifies the frames around every suspicious sample (the policy's
/// persistence rule needs them): `persist_step` apart within `persist_window` either
/// side. Only suspicious moments cost extra decoding; a clean video costs nothing.
fn look_around(
    source: &MediaSource,
    classifier: &mut Classifier,
    config: &Config,
    policy: &Policy,
    records: &[FrameRecord],
    path: &str,
) -> Result<Vec<FrameRecord>, ScanError> {
    let mut suspicious: Vec<(f64, f32)> = records
        .iter()
        .map(|r| (r.t, r.signals()))
        .filter(|(_, s)| policy.suspicious(s))
        .map(|(t, s)| {
            let strongest = s.detections.iter().map(|d| d.score).fold(s.nsfw, f32::max);
            (t, strongest)
        })
        .collect();
    if suspicious.is_empty() {
        return Ok(Vec::new());
    }
    suspicious.sort_by(|a, b| b.1.total_cmp(&a.1));
    suspicious.truncate(MAX_SUSPICIOUS);
    suspicious.sort_by(|a, b| a.0.total_cmp(&b.0));
    let w = policy.nudity.persist_window;
    let mut windows: Vec<(f64, f64)> = Vec::new();
    for (t, _) in suspicious {
        match windows.last_mut() {
            Some(last) if t - w <= last.1 => last.1 = t + w,
            _ => windows.push(((t - w).max(0.0), t + w)),
        }
    }
    let sampler = Sampler {
        config: &config.sampler,
        limits: &config.limits,
    };
    let step = policy.nudity.persist_step;
    let (_, out) = sample_and_classify(classifier, config.inference.batch_size, path, |sink| {
        sampler.around(source, &windows, step, sink)
    })?;
    Ok(out)
}

/// Longest unexamined stretch: head, between samples, and up to the last frame.
pub fn largest_gap(sampled: &[f64], last_frame: f64) -> f64 {
    let Some(&first) = sampled.first() else {
        return last_frame.max(0.0);
    };
    let mut gap = first.max(0.0);
    for w in sampled.windows(2) {
        gap = gap.max(w[1] - w[0]);
    }
    gap.max(last_frame - sampled[sampled.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_gap_counts_head_middle_and_tail() {
        assert_eq!(largest_gap(&[0.0, 1.0, 1.5], 1.8), 1.0);
        assert_eq!(largest_gap(&[0.5, 1.0], 1.2), 0.5);
        assert!((largest_gap(&[0.0, 1.0], 3.0) - 2.0).abs() < 1e-12);
        assert_eq!(largest_gap(&[], 4.0), 4.0);
    }
}
