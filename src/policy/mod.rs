//! Policy: per-frame model signals -> a verdict with reasons, time ranges and evidence.
//!
//! Thresholds live in a TOML file (the built-in one is `default.toml`, documented in
//! docs/policy.md). The verdict is the most severe action any reason asks for.

mod timeline;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::inference::{Face, FrameSignals, LABELS};

pub use timeline::{merge, merge_ranges};

const DEFAULT_POLICY: &str = include_str!("default.toml");

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file {path}: {detail}")]
    Load { path: String, detail: String },
    #[error("policy {origin}: {detail}")]
    Invalid { origin: String, detail: String },
}

/// What to do with a video, in increasing severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Review,
    Restrict,
    Block,
}

impl Action {
    /// The name used in reports, the catalog and webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Review => "review",
            Action::Restrict => "restrict",
            Action::Block => "block",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub version: String,
    pub nsfw: NsfwRule,
    pub nudity: NudityRule,
    pub minor: MinorRule,
    pub timeline: TimelineRule,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NsfwRule {
    pub review: f32,
    pub restrict: f32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NudityRule {
    pub explicit_classes: Vec<String>,
    pub explicit_score: f32,
    pub explicit_alone_score: f32,
    pub corroborating_nsfw: f32,
    pub suggestive_classes: Vec<String>,
    pub suggestive_score: f32,
    /// In videos: the neighbourhood (seconds either side) a suspicious sample is looked at
    /// densely, every `persist_step` seconds, and the share of those frames that must
    /// carry the signal for it to count.
    pub persist_window: f64,
    pub persist_step: f64,
    pub persist_fraction: f32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinorRule {
    pub p_minor: f32,
    pub agree: f32,
    pub possible: f32,
    pub face_score: f32,
    pub action: Action,
    pub window: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineRule {
    pub merge_gap: f64,
    pub evidence_per_reason: usize,
}

/// Reason codes, stable identifiers for automation (documented in docs/policy.md).
pub mod codes {
    pub const NSFW_HIGH: &str = "nsfw_high";
    pub const NSFW_MODERATE: &str = "nsfw_moderate";
    pub const EXPLICIT_NUDITY: &str = "explicit_nudity";
    pub const POSSIBLE_EXPLICIT_NUDITY: &str = "possible_explicit_nudity";
    pub const SUGGESTIVE: &str = "suggestive";
    pub const PROBABLE_MINOR: &str = "probable_minor";
    pub const POSSIBLE_MINOR: &str = "possible_minor";
    pub const UNJUDGEABLE_FACE: &str = "unjudgeable_face";
    pub const MINOR_EXPLICIT: &str = "minor_with_explicit_content";
    pub const MINOR_POSSIBLE_EXPLICIT: &str = "minor_with_possible_explicit_content";
}

/// One reason behind a verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub action: Action,
    /// `[start, end]` seconds, merged across sampled frames.
    pub ranges: Vec<[f64; 2]>,
    /// Highest score that triggered it (probability).
    pub max_score: f32,
    /// Timestamps of the strongest frames behind it.
    pub evidence: Vec<f64>,
}

/// The policy's judgement of one video (or image).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub verdict: Action,
    pub escalate: bool,
    pub reasons: Vec<Reason>,
}

impl Policy {
    /// The built-in policy.
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_POLICY, "built-in").expect("the built-in policy is valid (unit-tested)")
    }

    pub fn load(path: Option<&Path>) -> Result<Self, PolicyError> {
        let Some(path) = path else {
            return Ok(Self::builtin());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Load {
            path: shown.clone(),
            detail: e.to_string(),
        })?;
        Self::parse(&text, &shown)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| PolicyError::Load {
            path: origin.to_string(),
            detail: e.to_string(),
        })?;
        policy.validate(origin)?;
        Ok(policy)
    }

    fn validate(&self, origin: &str) -> Result<(), PolicyError> {
        let invalid = |detail: String| PolicyError::Invalid {
            origin: origin.to_string(),
            detail,
        };
        let probs = [
            ("nsfw.review", self.nsfw.review),
            ("nsfw.restrict", self.nsfw.restrict),
            ("nudity.explicit_score", self.nudity.explicit_score),
            (
                "nudity.explicit_alone_score",
                self.nudity.explicit_alone_score,
            ),
            ("nudity.corroborating_nsfw", self.nudity.corroborating_nsfw),
            ("nudity.suggestive_score", self.nudity.suggestive_score),
            ("nudity.persist_fraction", self.nudity.persist_fraction),
            ("minor.p_minor", self.minor.p_minor),
            ("minor.agree", self.minor.agree),
            ("minor.possible", self.minor.possible),
            ("minor.face_score", self.minor.face_score),
        ];
        for (name, v) in probs {
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(format!(
                    "{name} = {v} is not a probability in [0, 1]"
                )));
            }
        }
        if self.nsfw.review > self.nsfw.restrict {
            return Err(invalid("nsfw.review must not exceed nsfw.restrict".into()));
        }
        for class in self
            .nudity
            .explicit_classes
            .iter()
            .chain(&self.nudity.suggestive_classes)
        {
            if !LABELS.contains(&class.as_str()) {
                return Err(invalid(format!(
                    "unknown NudeNet class {class:?}; known: {}",
                    LABELS.join(", ")
                )));
            }
        }
        if !(self.nudity.persist_window > 0.0
            && self.nudity.persist_window <= 5.0
            && self.nudity.persist_step >= 0.02
            && self.nudity.persist_step <= self.nudity.persist_window)
        {
            return Err(invalid(
                "nudity.persist_window must be in (0, 5] seconds and nudity.persist_step in [0.02, persist_window]".into(),
            ));
        }
        if !(self.minor.window >= 0.0 && self.timeline.merge_gap >= 0.0) {
            return Err(invalid(
                "minor.window and timeline.merge_gap must be >= 0 seconds".into(),
            ));
        }
        Ok(())
    }

    /// Whether a sampled video frame deserves the dense look around it: an explicit class
    /// at `explicit_score`, or open_nsfw at `nsfw.review`.
    pub fn suspicious(&self, s: &FrameSignals) -> bool {
        s.nsfw >= self.nsfw.review || self.explicit_score(s).is_some()
    }

    fn explicit_score(&self, s: &FrameSignals) -> Option<f32> {
        s.detections
            .iter()
            .filter(|d| {
                d.score >= self.nudity.explicit_score
                    && self.nudity.explicit_classes.contains(&d.class)
            })
            .map(|d| d.score)
            .fold(None, |m: Option<f32>, x| Some(m.map_or(x, |m| m.max(x))))
    }

    /// Judges one image: every rule applies to the single frame.
    pub fn judge(&self, frames: &[(f64, &FrameSignals)]) -> Judgement {
        self.judge_frames(frames, false)
    }

    /// Judges a video's examined frames `(t, signals)`, sorted by time, including the
    /// neighbours decoded around suspicious samples. Explicit nudity and high open_nsfw
    /// restrict only when they persist: at least `persist_fraction` of the frames within
    /// `persist_window` carry the signal, and for nudity also open_nsfw reaches
    /// `corroborating_nsfw` on that share of them or two different explicit classes appear. Real explicit
    /// content lasts; a detector's one-frame spike on a cartoon does not, and asks for
    /// review instead.
    pub fn judge_video(&self, frames: &[(f64, &FrameSignals)]) -> Judgement {
        self.judge_frames(frames, true)
    }

    /// Whether a signal at `t` lasts: `by_time` is the video's frames sorted by time, so
    /// the window around `t` is found by binary search (a long video has tens of
    /// thousands of frames, and this runs for each frame with a hit).
    fn persists(&self, by_time: &[(f64, &FrameSignals)], t: f64, nudity: bool) -> bool {
        let window = self.nudity.persist_window + 1e-6;
        let from = by_time.partition_point(|(u, _)| *u < t - window);
        let to = by_time.partition_point(|(u, _)| *u <= t + window);
        let near: Vec<&FrameSignals> = by_time[from..to.max(from)]
            .iter()
            .map(|(_, s)| *s)
            .collect();
        // A signal seen on fewer than three frames has not shown that it lasts.
        if near.len() < 3 {
            return false;
        }
        let share = |hit: &dyn Fn(&FrameSignals) -> bool| {
            near.iter().filter(|s| hit(s)).count() as f32 / near.len() as f32
        };
        if !nudity {
            return share(&|s| s.nsfw >= self.nsfw.restrict) >= self.nudity.persist_fraction;
        }
        if share(&|s| self.explicit_score(s).is_some()) < self.nudity.persist_fraction {
            return false;
        }
        let corroborated =
            share(&|s| s.nsfw >= self.nudity.corroborating_nsfw) >= self.nudity.persist_fraction;
        let mut classes: Vec<&str> = near
            .iter()
            .flat_map(|s| s.detections.iter())
            .filter(|d| {
                d.score >= self.nudity.explicit_score
                    && self.nudity.explicit_classes.contains(&d.class)
            })
            .map(|d| d.class.as_str())
            .collect();
        classes.sort_unstable();
        classes.dedup();
        corroborated || classes.len() >= 2
    }

    fn judge_frames(&self, frames: &[(f64, &FrameSignals)], video: bool) -> Judgement {
        // (t, score) hits per reason.
        let mut nsfw_high = Vec::new();
        let mut nsfw_moderate = Vec::new();
        let mut explicit = Vec::new();
        let mut possible_explicit = Vec::new();
        let mut suggestive = Vec::new();
        let mut minors = Vec::new();
        let mut possible_minors = Vec::new();
        let mut unjudgeable = Vec::new();
        let mut by_time = frames.to_vec();
        by_time.sort_by(|a, b| a.0.total_cmp(&b.0));
        for &(t, s) in frames {
            if s.nsfw >= self.nsfw.restrict && (!video || self.persists(&by_time, t, false)) {
                nsfw_high.push((t, s.nsfw));
            } else if s.nsfw >= self.nsfw.review {
                nsfw_moderate.push((t, s.nsfw));
            }
            let best = |classes: &[String], min: f32| {
                s.detections
                    .iter()
                    .filter(|d| d.score >= min && classes.contains(&d.class))
                    .map(|d| d.score)
                    .fold(None, |m: Option<f32>, x| Some(m.map_or(x, |m| m.max(x))))
            };
            if let Some(score) = self.explicit_score(s) {
                let confirmed = if video {
                    self.persists(&by_time, t, true)
                } else {
                    score >= self.nudity.explicit_alone_score
                        || s.nsfw >= self.nudity.corroborating_nsfw
                };
                if confirmed {
                    explicit.push((t, score));
                } else {
                    possible_explicit.push((t, score));
                }
            }
            if let Some(score) = best(
                &self.nudity.suggestive_classes,
                self.nudity.suggestive_score,
            ) {
                suggestive.push((t, score));
            }
            let best = |faces: &mut dyn Iterator<Item = f32>| {
                faces.fold(None, |m: Option<f32>, x| Some(m.map_or(x, |m| m.max(x))))
            };
            let seen = || s.faces.iter().filter(|f| f.score >= self.minor.face_score);
            let probable = |f: &&Face| {
                f.p_minor.is_some_and(|p| p >= self.minor.p_minor)
                    && f.models_agree_minor(self.minor.agree)
            };
            if let Some(p) = best(&mut seen().filter(probable).filter_map(|f| f.p_minor)) {
                minors.push((t, p));
            }
            let possible = seen()
                .filter(|f| !probable(f))
                .filter_map(|f| f.p_minor.filter(|&p| p >= self.minor.possible));
            if let Some(p) = best(&mut possible.into_iter()) {
                possible_minors.push((t, p));
            }
            let unjudged = seen().filter(|f| f.unjudgeable.is_some()).map(|f| f.score);
            if let Some(score) = best(&mut unjudged.into_iter()) {
                unjudgeable.push((t, score));
            }
        }

        let mut reasons = Vec::new();
        let mut add =
            |code: &str, action: Action, hits: &[(f64, f32)], ranges: Option<Vec<[f64; 2]>>| {
                if hits.is_empty() {
                    return;
                }
                let times: Vec<f64> = hits.iter().map(|h| h.0).collect();
                let mut strongest = hits.to_vec();
                strongest.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.total_cmp(&b.0)));
                let mut evidence: Vec<f64> = strongest
                    .iter()
                    .take(self.timeline.evidence_per_reason)
                    .map(|h| h.0)
                    .collect();
                evidence.sort_by(f64::total_cmp);
                reasons.push(Reason {
                    code: code.to_string(),
                    action,
                    ranges: ranges.unwrap_or_else(|| merge(&times, self.timeline.merge_gap)),
                    max_score: strongest[0].1,
                    evidence,
                });
            };

        // Explicit content with a probable minor close in time: block and escalate when the
        // nudity is confirmed; when it is not (a cartoon's spike, say), a person looks first.
        let pair = |hits: &[(f64, f32)]| {
            let (mut pairs, mut ranges) = (Vec::new(), Vec::new());
            for &(te, se) in hits {
                for &(tm, sm) in &minors {
                    if (te - tm).abs() <= self.minor.window {
                        pairs.push((te, se.min(sm)));
                        ranges.push([te.min(tm), te.max(tm)]);
                    }
                }
            }
            (pairs, merge_ranges(ranges, self.timeline.merge_gap))
        };
        let (pairs, pair_ranges) = pair(&explicit);
        let (possible_pairs, possible_pair_ranges) = pair(&possible_explicit);
        let escalate = !pairs.is_empty();
        // Explicit content near a face nobody can judge: a person must look.
        let near_explicit = |t: f64| {
            explicit
                .iter()
                .chain(&possible_explicit)
                .any(|&(te, _)| (te - t).abs() <= self.minor.window)
        };
        let unjudgeable: Vec<(f64, f32)> = unjudgeable
            .into_iter()
            .filter(|&(t, _)| near_explicit(t))
            .collect();
        add(
            codes::MINOR_EXPLICIT,
            Action::Block,
            &pairs,
            Some(pair_ranges),
        );
        add(
            codes::MINOR_POSSIBLE_EXPLICIT,
            Action::Review,
            &possible_pairs,
            Some(possible_pair_ranges),
        );
        add(codes::EXPLICIT_NUDITY, Action::Restrict, &explicit, None);
        add(codes::NSFW_HIGH, Action::Restrict, &nsfw_high, None);
        add(codes::PROBABLE_MINOR, self.minor.action, &minors, None);
        add(
            codes::POSSIBLE_MINOR,
            Action::Review,
            &possible_minors,
            None,
        );
        add(codes::UNJUDGEABLE_FACE, Action::Review, &unjudgeable, None);
        add(
            codes::POSSIBLE_EXPLICIT_NUDITY,
            Action::Review,
            &possible_explicit,
            None,
        );
        add(codes::SUGGESTIVE, Action::Review, &suggestive, None);
        add(codes::NSFW_MODERATE, Action::Review, &nsfw_moderate, None);
        reasons.retain(|r| r.action != Action::Allow);
        let verdict = reasons
            .iter()
            .map(|r| r.action)
            .max()
            .unwrap_or(Action::Allow);
        Judgement {
            verdict,
            escalate,
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::{AgeEstimate, Detection, Face, Quality};

    fn frame(nsfw: f32, dets: &[(&str, f32)], minor: Option<f32>) -> FrameSignals {
        let mut detections: Vec<Detection> = dets
            .iter()
            .enumerate()
            .map(|(i, (c, s))| Detection {
                class: c.to_string(),
                score: *s,
                bbox: [i as i32 * 10, 0, 8, 8],
            })
            .collect();
        let mut faces = Vec::new();
        if let Some(p) = minor {
            detections.push(Detection {
                class: "FACE_FEMALE".into(),
                score: 0.8,
                bbox: [100, 100, 40, 40],
            });
            let age = if p > 0.5 { 12.0 } else { 30.0 };
            let estimate = |model: &str| AgeEstimate {
                model: model.into(),
                age,
                sd: 5.0,
                p_minor: p,
                reported_p_minor: None,
                ignored: None,
            };
            faces.push(Face {
                bbox: [100, 100, 40, 40],
                score: 0.8,
                found_by: Vec::new(),
                landmarks: None,
                quality: Quality::default(),
                unjudgeable: None,
                age: Some(age),
                age_sd: Some(5.0),
                p_minor: Some(p),
                estimates: vec![estimate("age_v1"), estimate("faceapi_age")],
                chip: None,
            });
        }
        FrameSignals {
            nsfw,
            detections,
            faces,
        }
    }

    fn judge(frames: &[(f64, FrameSignals)]) -> Judgement {
        let refs: Vec<(f64, &FrameSignals)> = frames.iter().map(|(t, s)| (*t, s)).collect();
        Policy::builtin().judge(&refs)
    }

    fn codes_of(j: &Judgement) -> Vec<&str> {
        j.reasons.iter().map(|r| r.code.as_str()).collect()
    }

    #[test]
    fn clean_frames_are_allowed() {
        let j = judge(&[
            (0.0, frame(0.01, &[("FACE_MALE", 0.9)], None)),
            (1.0, frame(0.2, &[], Some(0.1))),
        ]);
        assert_eq!(j.verdict, Action::Allow);
        assert!(j.reasons.is_empty() && !j.escalate);
    }

    #[test]
    fn nsfw_thresholds_review_then_restrict() {
        let j = judge(&[(0.0, frame(0.7, &[], None))]);
        assert_eq!(
            (j.verdict, codes_of(&j)),
            (Action::Review, vec![codes::NSFW_MODERATE])
        );
        let j = judge(&[(0.0, frame(0.9, &[], None)), (1.0, frame(0.7, &[], None))]);
        assert_eq!(j.verdict, Action::Restrict);
        assert_eq!(codes_of(&j), vec![codes::NSFW_HIGH, codes::NSFW_MODERATE]);
    }

    #[test]
    fn explicit_nudity_restricts_with_ranges_and_evidence() {
        let hit = || frame(0.3, &[("FEMALE_BREAST_EXPOSED", 0.7)], None);
        let j = judge(&[
            (1.0, hit()),
            (2.0, hit()),
            (3.0, frame(0.1, &[], None)),
            (9.0, hit()),
        ]);
        assert_eq!(j.verdict, Action::Restrict);
        let r = &j.reasons[0];
        assert_eq!(r.code, codes::EXPLICIT_NUDITY);
        assert_eq!(r.ranges, vec![[1.0, 2.0], [9.0, 9.0]]);
        assert_eq!(r.evidence.len(), 3);
        assert!((r.max_score - 0.7).abs() < 1e-6);
    }

    #[test]
    fn uncorroborated_explicit_detections_ask_for_review() {
        // The Big Buck Bunny case: NudeNet fires on a cartoon, open_nsfw does not agree.
        let j = judge(&[(2.0, frame(0.15, &[("FEMALE_BREAST_EXPOSED", 0.78)], None))]);
        assert_eq!(
            (j.verdict, codes_of(&j)),
            (Action::Review, vec![codes::POSSIBLE_EXPLICIT_NUDITY])
        );
        // A confident detection needs no corroboration.
        let j = judge(&[(2.0, frame(0.15, &[("FEMALE_BREAST_EXPOSED", 0.85)], None))]);
        assert_eq!(j.verdict, Action::Restrict);
    }

    #[test]
    fn uncorroborated_explicit_content_with_a_minor_goes_to_a_person_first() {
        let j = judge(&[(
            1.0,
            frame(0.05, &[("FEMALE_GENITALIA_EXPOSED", 0.6)], Some(0.9)),
        )]);
        assert_eq!(j.verdict, Action::Review);
        assert!(!j.escalate);
        assert_eq!(j.reasons[0].code, codes::MINOR_POSSIBLE_EXPLICIT);
    }

    #[test]
    fn weak_detections_do_not_count() {
        let j = judge(&[(
            0.0,
            frame(
                0.1,
                &[("FEMALE_GENITALIA_EXPOSED", 0.3), ("BELLY_EXPOSED", 0.5)],
                None,
            ),
        )]);
        assert_eq!(j.verdict, Action::Allow);
    }

    #[test]
    fn suggestive_content_asks_for_review() {
        let j = judge(&[(0.0, frame(0.1, &[("BUTTOCKS_COVERED", 0.7)], None))]);
        assert_eq!(
            (j.verdict, codes_of(&j)),
            (Action::Review, vec![codes::SUGGESTIVE])
        );
    }

    #[test]
    fn probable_minor_alone_asks_for_review() {
        let j = judge(&[(0.0, frame(0.1, &[], Some(0.9)))]);
        assert_eq!(
            (j.verdict, codes_of(&j)),
            (Action::Review, vec![codes::PROBABLE_MINOR])
        );
        assert!(!j.escalate);
    }

    #[test]
    fn minor_with_explicit_content_in_one_frame_blocks_and_escalates() {
        let j = judge(&[(
            4.0,
            frame(0.9, &[("FEMALE_GENITALIA_EXPOSED", 0.7)], Some(0.8)),
        )]);
        assert_eq!(j.verdict, Action::Block);
        assert!(j.escalate);
        assert_eq!(j.reasons[0].code, codes::MINOR_EXPLICIT);
        assert_eq!(j.reasons[0].ranges, vec![[4.0, 4.0]]);
    }

    #[test]
    fn minor_and_explicit_content_within_the_window_block() {
        let j = judge(&[
            (10.0, frame(0.1, &[], Some(0.8))),
            (11.5, frame(0.1, &[("ANUS_EXPOSED", 0.9)], None)),
        ]);
        assert_eq!(j.verdict, Action::Block);
        assert!(j.escalate);
        assert_eq!(j.reasons[0].ranges, vec![[10.0, 11.5]]);
        // Outside the window: restrict (explicit) + review (minor), no escalation.
        let j = judge(&[
            (10.0, frame(0.1, &[], Some(0.8))),
            (13.0, frame(0.1, &[("ANUS_EXPOSED", 0.9)], None)),
        ]);
        assert_eq!(j.verdict, Action::Restrict);
        assert!(!j.escalate);
    }

    #[test]
    fn a_minor_on_a_low_confidence_face_is_ignored() {
        let mut f = frame(0.1, &[("FEMALE_GENITALIA_EXPOSED", 0.9)], Some(0.9));
        f.faces[0].score = 0.3;
        let j = judge(&[(0.0, f)]);
        assert_eq!(j.verdict, Action::Restrict);
        assert!(!j.escalate);
    }

    fn judge_video(frames: &[(f64, FrameSignals)]) -> Judgement {
        let refs: Vec<(f64, &FrameSignals)> = frames.iter().map(|(t, s)| (*t, s)).collect();
        Policy::builtin().judge_video(&refs)
    }

    /// Eleven frames 0.1 s apart around t = 5, each from `at(i)`.
    fn dense(at: impl Fn(usize) -> FrameSignals) -> Vec<(f64, FrameSignals)> {
        (0..11).map(|i| (4.5 + i as f64 * 0.1, at(i))).collect()
    }

    #[test]
    fn in_videos_a_one_frame_spike_asks_for_review() {
        // The Big Buck Bunny 1080p case: one confident cartoon frame, nothing around it.
        let spike = |i: usize| {
            let dets: &[(&str, f32)] = if i == 5 {
                &[("FEMALE_BREAST_EXPOSED", 0.81)]
            } else {
                &[]
            };
            frame(0.05, dets, None)
        };
        let j = judge_video(&dense(spike));
        assert_eq!(
            (j.verdict, codes_of(&j)),
            (Action::Review, vec![codes::POSSIBLE_EXPLICIT_NUDITY])
        );
        // The same frame as a still image: the single-frame rule restricts it.
        let one = [(0.0, spike(5))];
        assert_eq!(judge(&one).verdict, Action::Restrict);
        // Without neighbours (nothing could be decoded around it) it is unconfirmed too.
        assert_eq!(judge_video(&one).verdict, Action::Review);
    }

    #[test]
    fn in_videos_explicit_content_that_persists_restricts() {
        // Persisting with open_nsfw agreeing.
        let lasting = |_: usize| frame(0.4, &[("FEMALE_BREAST_EXPOSED", 0.6)], None);
        assert_eq!(judge_video(&dense(lasting)).verdict, Action::Restrict);
        // Persisting without open_nsfw, but with two explicit classes: restrict.
        let two = |i: usize| {
            let class = if i.is_multiple_of(2) {
                "FEMALE_BREAST_EXPOSED"
            } else {
                "BUTTOCKS_EXPOSED"
            };
            frame(0.05, &[(class, 0.6)], None)
        };
        assert_eq!(judge_video(&dense(two)).verdict, Action::Restrict);
        // Persisting, one class, no open_nsfw (a cartoon character on screen): review.
        let cartoon = |_: usize| frame(0.05, &[("FEMALE_BREAST_EXPOSED", 0.6)], None);
        assert_eq!(judge_video(&dense(cartoon)).verdict, Action::Review);
        // Present on under half the frames: review.
        let flicker = |i: usize| {
            let dets: &[(&str, f32)] = if i.is_multiple_of(3) {
                &[("FEMALE_BREAST_EXPOSED", 0.9)]
            } else {
                &[]
            };
            frame(0.5, dets, None)
        };
        assert_eq!(judge_video(&dense(flicker)).verdict, Action::Review);
        // open_nsfw alone must persist to restrict.
        let nsfw = |i: usize| frame(if i == 5 { 0.9 } else { 0.1 }, &[], None);
        assert_eq!(judge_video(&dense(nsfw)).verdict, Action::Review);
        let nsfw = |_: usize| frame(0.9, &[], None);
        assert_eq!(judge_video(&dense(nsfw)).verdict, Action::Restrict);
    }

    /// The dense look around a sample is judged after the samples, so frames arrive out
    /// of time order: the window a persistence check looks at is by time, not position.
    #[test]
    fn persistence_does_not_depend_on_the_order_frames_arrive_in() {
        let lasting = |i: usize| {
            let dets: &[(&str, f32)] = if i.is_multiple_of(4) {
                &[]
            } else {
                &[("FEMALE_BREAST_EXPOSED", 0.6)]
            };
            frame(0.4, dets, None)
        };
        // A sparse pass every 2 s over a minute, and the dense look around t = 5.
        let mut frames: Vec<(f64, FrameSignals)> = (0..30)
            .map(|i| (2.0 * i as f64, frame(0.05, &[], None)))
            .collect();
        frames.extend(dense(lasting));
        let in_order = {
            let mut f = frames.clone();
            f.sort_by(|a, b| a.0.total_cmp(&b.0));
            judge_video(&f)
        };
        assert_eq!(in_order.verdict, Action::Restrict);
        frames.reverse();
        let reversed = judge_video(&frames);
        assert_eq!(codes_of(&reversed), codes_of(&in_order));
        assert_eq!(reversed.verdict, in_order.verdict);
    }

    #[test]
    fn models_that_disagree_make_a_possible_minor_not_a_probable_one() {
        let explicit = [("FEMALE_GENITALIA_EXPOSED", 0.9)];
        let mut f = frame(0.1, &explicit, Some(0.7));
        f.faces[0].estimates[0].p_minor = 0.2;
        let j = judge(&[(0.0, f)]);
        assert!(!j.escalate);
        assert_eq!(
            codes_of(&j),
            vec![codes::EXPLICIT_NUDITY, codes::POSSIBLE_MINOR]
        );
        // A misaligned model is left out, and one model alone is never "both agree".
        let mut f = frame(0.1, &explicit, Some(0.7));
        f.faces[0].estimates[0].ignored = Some("misaligned".into());
        let j = judge(&[(0.0, f)]);
        assert!(!j.escalate);
        assert!(codes_of(&j).contains(&codes::POSSIBLE_MINOR));
        // Under `possible`, nothing about minors at all.
        let j = judge(&[(0.0, frame(0.1, &[], Some(0.3)))]);
        assert_eq!(j.verdict, Action::Allow);
    }

    #[test]
    fn an_unjudgeable_face_next_to_explicit_content_asks_for_review() {
        let unjudgeable = |nsfw: f32, dets: &[(&str, f32)]| {
            let mut f = frame(nsfw, dets, Some(0.0));
            let face = &mut f.faces[0];
            face.unjudgeable = Some("too_small".into());
            (face.age, face.p_minor) = (None, None);
            f
        };
        let j = judge(&[(0.0, unjudgeable(0.1, &[("FEMALE_GENITALIA_EXPOSED", 0.6)]))]);
        assert_eq!(j.verdict, Action::Review);
        assert_eq!(
            codes_of(&j),
            vec![codes::UNJUDGEABLE_FACE, codes::POSSIBLE_EXPLICIT_NUDITY]
        );
        // Without explicit content an unjudgeable face is nothing to report.
        let j = judge(&[(0.0, unjudgeable(0.1, &[]))]);
        assert_eq!(j.verdict, Action::Allow);
    }

    #[test]
    fn builtin_policy_parses_and_bad_policies_are_explained() {
        assert_eq!(Policy::builtin().version, "vcw-default-1");
        let bad = DEFAULT_POLICY.replace("review = 0.60", "review = 1.5");
        let e = Policy::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.contains("nsfw.review"), "{e}");
        let bad = DEFAULT_POLICY.replace("\"ANUS_EXPOSED\",", "\"ANUS_EXPOSD\",");
        let e = Policy::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.contains("ANUS_EXPOSD"), "{e}");
        let e = Policy::parse("version = 1", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml"), "{e}");
    }
}
