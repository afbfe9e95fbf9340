//! Frame sampling: keyframes, a uniform minimum rate, optional scene changes, and a hard
//! bound on every unsampled stretch (`max_gap`).
//!
//! A first, cheap pass reads only packet headers to learn where the keyframes are. When
//! keyframes alone already satisfy the rate and the gap bound, the decoder skips every
//! non-key frame; otherwise every frame is decoded and the choice is made per frame, with
//! one frame of look-behind so that a gap is closed by the last frame *before* it opens.
//! Keyframe placement is the encoder's choice, so it is never trusted on its own.

use std::collections::HashSet;

use ff::software::scaling;
use ff::util::frame::video::Video as AvFrame;
use ffmpeg_next as ff;

use super::{MediaError, MediaSource, Probe};
use crate::config::{Limits, SamplerConfig};
use crate::frame::Frame;

/// Timestamps closer than this are the same instant (float error on pts * time_base).
const EPS: f64 = 1e-6;
/// Consecutive unreadable packets after which a file is declared corrupt, not slow.
const MAX_READ_ERRORS: u32 = 64;
/// Side of the grey thumbnail used for scene-change detection.
const THUMB: u32 = 32;

/// Why a frame was sampled (a frame can have several reasons; the first applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleReason {
    First,
    Keyframe,
    /// Taken to keep the minimum rate and the `max_gap` bound: the last frame before the
    /// bound would be crossed.
    Uniform,
    SceneChange,
    /// The final frame, so that the end of the video is covered.
    Last,
    /// Decoded around a suspicious sample, so the policy can see whether a signal persists.
    Neighbour,
}

/// One sampled picture.
#[derive(Debug)]
pub struct SampledFrame {
    /// Seconds from the start of the video stream.
    pub t: f64,
    pub reason: SampleReason,
    pub image: Frame,
}

/// What happened during sampling.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SampleStats {
    pub probe: Probe,
    /// True when keyframes satisfied the rate and gap bounds, so non-key frames were skipped.
    pub keyframes_only: bool,
    pub decoded_frames: u64,
    pub sampled_frames: u64,
    /// Packets the decoder rejected but that did not stop the scan.
    pub decode_errors: u64,
    /// Timestamp of the last frame in the file, seconds.
    pub last_frame: f64,
    /// Packets never decoded because no sample could fall among them (the rest of a
    /// GOP after its last sample).
    pub skipped_packets: u64,
}

/// A configured sampler; cheap to create, one per file.
pub struct Sampler<'a> {
    pub config: &'a SamplerConfig,
    pub limits: &'a Limits,
}

/// An opened input: its video stream's index, time base (seconds per tick), start and
/// declared duration (ticks), and a decoder for it.
struct Decoding {
    ictx: super::source::Opened,
    stream_index: usize,
    probe: Probe,
    tb: f64,
    start: i64,
    duration: i64,
    decoder: ff::decoder::Video,
}

/// Packet-level view of the stream, from the first pass.
struct Index {
    /// Keyframe times (seconds) and ordinals (in packet order), in time order.
    keyframes: Vec<(f64, usize)>,
    last_frame: f64,
    frame_duration: f64,
}

/// The ordinals of the keyframes to decode when keyframes alone are decoded: every
/// one, except one closer than `spacing` to the last kept whose successor (or the end)
/// still lies within `interval` of it, so thinning never opens a longer gap.
fn thin(keyframes: &[(f64, usize)], spacing: f64, interval: f64, end: f64) -> HashSet<usize> {
    let mut kept = HashSet::new();
    let mut last: Option<f64> = None;
    for (i, &(t, ordinal)) in keyframes.iter().enumerate() {
        let next = keyframes.get(i + 1).map_or(end, |k| k.0);
        if let Some(l) = last
            && t - l + EPS < spacing
            && next - l <= interval + EPS
        {
            continue;
        }
        kept.insert(ordinal);
        last = Some(t);
    }
    kept
}

impl Sampler<'_> {
    /// Sampling interval: the stricter of the minimum rate and the gap bound.
    fn interval(&self) -> f64 {
        (1.0 / self.config.min_rate).min(self.config.max_gap)
    }

    /// Samples `source`, handing each chosen frame to `sink` in presentation order.
    /// `sink` may stop the scan by returning an error message; `progress` receives the
    /// current position and the expected end, in seconds.
    pub fn run(
        &self,
        source: &MediaSource,
        mut sink: impl FnMut(SampledFrame) -> Result<(), String>,
        mut progress: impl FnMut(f64, f64),
    ) -> Result<SampleStats, MediaError> {
        let shown = source.name().to_string();
        let index = self.index(source)?;
        let Decoding {
            mut ictx,
            stream_index,
            probe,
            tb,
            start,
            duration,
            mut decoder,
        } = self.open(source)?;
        // The last frame starts one frame before the declared end.
        let declared_end = if duration > 0 {
            duration as f64 * tb - index.frame_duration
        } else {
            0.0
        };
        let keyframes_only = self.keyframes_suffice(&index);
        if keyframes_only {
            decoder.skip_frame(ff::codec::discard::Discard::NonKey);
        }
        let wanted = thin(
            &index.keyframes,
            1.0 / self.config.max_rate,
            self.interval(),
            index.last_frame + index.frame_duration,
        );
        let limits = self.limits;

        let mut state = Selection::new(self, keyframes_only, probe.rotation);
        let mut stats = SampleStats {
            // A container that declares no duration gets the one its packets span.
            probe: Probe {
                duration: if probe.duration > 0.0 {
                    probe.duration
                } else {
                    index.last_frame + index.frame_duration
                },
                ..probe.clone()
            },
            keyframes_only,
            decoded_frames: 0,
            sampled_frames: 0,
            decode_errors: 0,
            last_frame: index.last_frame,
            skipped_packets: 0,
        };
        // Decode only what sampling needs: once a sample is taken and the next sample
        // cannot be due before the next keyframe, the packets up to that keyframe are
        // read but not decoded (nothing after the keyframe depends on them). Scene
        // detection compares consecutive frames, so it needs them all.
        let may_skip = !keyframes_only && self.config.scene_threshold <= 0.0;
        let stream_end = index.last_frame + index.frame_duration;
        let mut skipping = false;
        let mut skipped_until = f64::NEG_INFINITY;
        // The decoder may already hold packets past a sample when it hands the sample
        // over (frame threads, reordering): skipping must not start once the keyframe
        // it skips to has been sent, or it would skip that keyframe's GOP instead.
        let mut newest_key_sent = f64::NEG_INFINITY;
        let mut packet = ff::Packet::empty();
        let mut read_errors = 0u32;
        let (mut key_ordinal, mut packet_ordinal) = (0usize, 0u64);
        let mut emit = |f: SampledFrame, stats: &mut SampleStats| -> Result<(), MediaError> {
            if stats.sampled_frames >= limits.max_sampled_frames {
                return Err(MediaError::OverLimit {
                    path: shown.clone(),
                    what: "sampled frames",
                    count: stats.sampled_frames + 1,
                    limit: limits.max_sampled_frames,
                    setting: "limits.max_sampled_frames",
                });
            }
            stats.sampled_frames += 1;
            sink(f).map_err(|reason| MediaError::Stopped {
                path: shown.clone(),
                reason,
            })
        };
        let mut frame = AvFrame::empty();
        let mut eof = false;
        while !eof {
            match packet.read(&mut ictx) {
                Ok(()) => {
                    read_errors = 0;
                    if packet.stream() != stream_index {
                        continue;
                    }
                    // Untimed packets get the times the index pass gave them.
                    if packet.pts().is_none() && packet.dts().is_none() {
                        let t = packet_ordinal as f64 * untimed_step(&probe);
                        packet.set_pts(Some(start + (t / tb).round() as i64));
                    }
                    packet_ordinal += 1;
                    // Only keyframes are wanted: the others need not reach the decoder.
                    // Besides saving work, FFmpeg 5.1's frame-threaded Theora decoder fails
                    // every packet after the first when it is told to discard non-key
                    // frames (the ffmpeg CLI does the same with `-threads 2 -skip_frame
                    // nokey`).
                    // Keyframes closer together than sampler.max_rate allows are thinned
                    // (both passes read the same packets, so ordinals match).
                    let thinned = packet.is_key() && {
                        key_ordinal += 1;
                        !wanted.contains(&(key_ordinal - 1))
                    };
                    if keyframes_only && (!packet.is_key() || thinned) {
                        continue;
                    }
                    if skipping && !packet.is_key() {
                        if let Some(ts) = packet.pts().or(packet.dts()) {
                            skipped_until = skipped_until.max((ts - start) as f64 * tb);
                        }
                        stats.skipped_packets += 1;
                        continue;
                    }
                    skipping = false;
                    if packet.is_key()
                        && let Some(ts) = packet.pts().or(packet.dts())
                    {
                        newest_key_sent = newest_key_sent.max((ts - start) as f64 * tb);
                    }
                    if decoder.send_packet(&packet).is_err() {
                        stats.decode_errors += 1;
                        continue;
                    }
                }
                Err(ff::Error::Eof) => {
                    eof = true;
                    // Flushing cannot fail in a way that matters: remaining frames drain below.
                    let _ = decoder.send_eof();
                }
                Err(e) => {
                    read_errors += 1;
                    if read_errors >= MAX_READ_ERRORS {
                        return Err(corrupt(&shown, &format!("unreadable data: {e}")));
                    }
                    continue;
                }
            }
            while decoder.receive_frame(&mut frame).is_ok() {
                stats.decoded_frames += 1;
                // The size the decoder produced, which a stream may change midway.
                if frame.width() > limits.max_width || frame.height() > limits.max_height {
                    return Err(MediaError::TooManyPixels {
                        path: shown,
                        width: frame.width(),
                        height: frame.height(),
                        max_width: limits.max_width,
                        max_height: limits.max_height,
                    });
                }
                let ts = frame.timestamp().or(frame.pts());
                let t = match ts {
                    Some(ts) => (ts - start) as f64 * tb,
                    None => state.prev_t().map_or(0.0, |p| p + index.frame_duration),
                };
                progress(t, index.last_frame);
                for out in state.offer(&mut frame, t, &shown)? {
                    let sampled_at = out.t;
                    emit(out, &mut stats)?;
                    skipping = may_skip
                        && next_keyframe_if_rest_unneeded(
                            &index.keyframes,
                            stream_end,
                            sampled_at,
                            self.interval(),
                        )
                        .is_some_and(|k| newest_key_sent + EPS < k);
                }
            }
        }
        if let Some(out) = state.finish(index.frame_duration, &shown)? {
            emit(out, &mut stats)?;
        }
        // Skipped packets were read, so the file reaches them.
        let decoded_until = state
            .last_seen
            .unwrap_or(f64::NEG_INFINITY)
            .max(skipped_until);
        if stats.decoded_frames == 0 {
            return Err(corrupt(&shown, "no frame could be decoded"));
        }
        // Headers (an mp4 moov, a stream duration) describe the whole file even when its
        // data is cut short; estimated container durations are not trusted for this.
        let declared = declared_end.max(index.last_frame);
        let slack = self.config.max_gap.max(2.0 * index.frame_duration);
        if decoded_until + slack < declared {
            return Err(MediaError::Truncated {
                path: shown,
                decoded_until: decoded_until.max(0.0),
                declared,
            });
        }
        Ok(stats)
    }

    /// The frames nearest to every `step` seconds inside each window `[a, b]` (sorted,
    /// non-overlapping): the dense look around a suspicious sample that the policy's
    /// persistence rule needs. Each window is reached by seeking to the keyframe before
    /// it, so the cost is a GOP's worth of decoding per window, not the whole file. Where
    /// the container cannot seek, decoding goes on from where it is; a window already
    /// passed then yields fewer frames (the policy treats a signal it cannot confirm as
    /// unconfirmed). Frames go to `sink` as they are decoded (a 1080p frame is 6 MB; hundreds of them
    /// must not pile up), which may stop the work by returning an error message.
    pub fn around(
        &self,
        source: &MediaSource,
        windows: &[(f64, f64)],
        step: f64,
        mut sink: impl FnMut(SampledFrame) -> Result<(), String>,
    ) -> Result<(), MediaError> {
        let shown = source.name().to_string();
        let Decoding {
            mut ictx,
            stream_index,
            probe,
            tb,
            start,
            mut decoder,
            ..
        } = self.open(source)?;
        let half = untimed_step(&probe) / 2.0;
        let mut rgb = None;
        let mut packet = ff::Packet::empty();
        let mut frame = AvFrame::empty();
        for &(a, b) in windows {
            let target =
                ((start as f64 * tb + a.max(0.0)) * f64::from(ff::ffi::AV_TIME_BASE)) as i64;
            if ictx.seek(target, ..target + 1).is_ok() {
                decoder.flush();
            }
            let mut next = a;
            let (mut read_errors, mut at_end) = (0u32, false);
            'window: loop {
                match packet.read(&mut ictx) {
                    Ok(()) => {
                        read_errors = 0;
                        if packet.stream() == stream_index {
                            // A packet the decoder rejects costs only its own frames.
                            let _ = decoder.send_packet(&packet);
                        }
                    }
                    Err(ff::Error::Eof) => {
                        at_end = true;
                        let _ = decoder.send_eof();
                    }
                    Err(_) => {
                        read_errors += 1;
                        if read_errors >= MAX_READ_ERRORS {
                            break;
                        }
                        continue;
                    }
                }
                while decoder.receive_frame(&mut frame).is_ok() {
                    if frame.width() > self.limits.max_width
                        || frame.height() > self.limits.max_height
                    {
                        return Err(MediaError::TooManyPixels {
                            path: shown,
                            width: frame.width(),
                            height: frame.height(),
                            max_width: self.limits.max_width,
                            max_height: self.limits.max_height,
                        });
                    }
                    let Some(ts) = frame.timestamp().or(frame.pts()) else {
                        continue;
                    };
                    let t = (ts - start) as f64 * tb;
                    if t > b + half {
                        break 'window;
                    }
                    if t + half < next {
                        continue;
                    }
                    let conv = Converter::for_frame(
                        &mut rgb,
                        &frame,
                        ff::format::Pixel::RGB24,
                        None,
                        &shown,
                    )?;
                    let (w, h, data) = conv.run(&frame, &shown)?;
                    sink(SampledFrame {
                        t,
                        reason: SampleReason::Neighbour,
                        image: Frame::new(w, h, data).rotated(probe.rotation),
                    })
                    .map_err(|reason| MediaError::Stopped {
                        path: shown.clone(),
                        reason,
                    })?;
                    next = t + step;
                }
                if at_end {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The input with its video stream's decoder ready.
    fn open(&self, source: &MediaSource) -> Result<Decoding, MediaError> {
        let shown = source.name();
        let (ictx, stream_index, probe) = super::probe::open(source, self.limits)?;
        let stream = ictx
            .stream(stream_index)
            .ok_or_else(|| corrupt(shown, "video stream vanished on reopen"))?;
        let start = if stream.start_time() == ff::ffi::AV_NOPTS_VALUE {
            0
        } else {
            stream.start_time()
        };
        let mut ctx = ff::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| corrupt(shown, &format!("codec parameters: {e}")))?;
        ctx.set_threading(ff::codec::threading::Config {
            kind: ff::codec::threading::Type::Frame,
            count: self.config.decoder_threads,
            ..Default::default()
        });
        let decoder = ctx
            .decoder()
            .video()
            .map_err(|e| corrupt(shown, &format!("no decoder for this codec: {e}")))?;
        Ok(Decoding {
            tb: f64::from(stream.time_base()),
            start,
            duration: stream.duration(),
            ictx,
            stream_index,
            probe,
            decoder,
        })
    }

    /// First pass: packet timestamps and key flags only, no decoding.
    fn index(&self, source: &MediaSource) -> Result<Index, MediaError> {
        let shown = source.name().to_string();
        let (mut ictx, stream_index, probe) = super::probe::open(source, self.limits)?;
        let stream = ictx
            .stream(stream_index)
            .ok_or_else(|| corrupt(&shown, "no video stream"))?;
        let tb = f64::from(stream.time_base());
        let start = if stream.start_time() == ff::ffi::AV_NOPTS_VALUE {
            None
        } else {
            Some(stream.start_time())
        };
        let untimed_step = untimed_step(&probe);
        let mut times: Vec<f64> = Vec::new();
        let mut keyframes = Vec::new();
        let mut durations = Vec::new();
        let mut packet = ff::Packet::empty();
        let mut read_errors = 0u32;
        loop {
            match packet.read(&mut ictx) {
                Ok(()) => read_errors = 0,
                Err(ff::Error::Eof) => break,
                Err(e) => {
                    read_errors += 1;
                    if read_errors >= MAX_READ_ERRORS {
                        return Err(corrupt(&shown, &format!("unreadable data: {e}")));
                    }
                    continue;
                }
            }
            if packet.stream() != stream_index {
                continue;
            }
            // A raw elementary stream (`.h264`, `.hevc`) has no timestamps: its frames
            // are taken to follow each other at the declared rate.
            let ts = packet.pts().or(packet.dts());
            let t = match ts {
                Some(ts) => (ts - start.unwrap_or(0)) as f64 * tb,
                None => times.last().map_or(0.0, |last| last + untimed_step),
            };
            if packet.is_key() {
                keyframes.push((t, keyframes.len()));
            }
            if times.len() as u64 >= self.limits.max_frames {
                return Err(MediaError::OverLimit {
                    path: shown,
                    what: "video frames or more",
                    count: times.len() as u64 + 1,
                    limit: self.limits.max_frames,
                    setting: "limits.max_frames",
                });
            }
            if packet.duration() > 0 {
                durations.push(packet.duration() as f64 * tb);
            }
            times.push(t);
        }
        if times.is_empty() {
            return Err(corrupt(&shown, "the video stream holds no frames"));
        }
        keyframes.sort_by(|a, b| a.0.total_cmp(&b.0));
        let last_frame = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let frame_duration = if !durations.is_empty() {
            durations.iter().sum::<f64>() / durations.len() as f64
        } else if probe.frame_rate > 0.0 {
            1.0 / probe.frame_rate
        } else {
            0.04
        };
        // The duration the packets span, whatever the container declares (or omits).
        let duration = last_frame + frame_duration;
        if duration > self.limits.max_duration {
            return Err(MediaError::TooLong {
                path: shown,
                duration,
                limit: self.limits.max_duration,
            });
        }
        Ok(Index {
            keyframes,
            last_frame,
            frame_duration,
        })
    }

    /// Whether decoding keyframes alone leaves no stretch longer than the interval.
    fn keyframes_suffice(&self, index: &Index) -> bool {
        if !self.config.keyframes || self.config.scene_threshold > 0.0 {
            return false;
        }
        let interval = self.interval();
        let Some(&(first, _)) = index.keyframes.first() else {
            return false;
        };
        let end = index.last_frame + index.frame_duration;
        let mut prev = 0.0f64.min(first);
        if first - prev > EPS {
            return false;
        }
        for &(k, _) in &index.keyframes {
            if k - prev > interval + EPS {
                return false;
            }
            prev = k;
        }
        end - prev <= interval + EPS
    }
}

/// The next keyframe (or the end of the stream) after a sample at `last`, if no frame
/// before it can be sampled: the next sample is due by the rate no earlier than that
/// keyframe. The rate interval is at most `max_gap`, so no gap-closing frame is needed
/// either; frames from the keyframe on are decoded and judged as usual.
fn next_keyframe_if_rest_unneeded(
    keyframes: &[(f64, usize)],
    end: f64,
    last: f64,
    interval: f64,
) -> Option<f64> {
    let next = keyframes
        .iter()
        .map(|&(t, _)| t)
        .find(|&t| t > last + EPS)
        .unwrap_or(end);
    (next <= last + interval + EPS).then_some(next)
}

/// Time between the frames of a stream without timestamps (a raw `.h264` or `.hevc`):
/// its declared rate, or 25 frames a second.
fn untimed_step(probe: &Probe) -> f64 {
    if probe.frame_rate > 0.0 {
        1.0 / probe.frame_rate
    } else {
        0.04
    }
}

fn corrupt(path: &str, detail: &str) -> MediaError {
    MediaError::Corrupt {
        path: path.to_string(),
        detail: detail.to_string(),
    }
}

/// Per-frame sampling decisions plus the conversion of chosen frames to RGB.
struct Selection {
    keyframes: bool,
    keyframes_only: bool,
    interval: f64,
    /// Least time between keyframe or scene samples (1 / `sampler.max_rate`).
    spacing: f64,
    max_gap: f64,
    scene_threshold: f64,
    rotation: u32,
    last_sampled: Option<f64>,
    /// The previous decoded frame, kept until we know whether the gap bound needs it.
    prev: Option<(AvFrame, f64)>,
    last_seen: Option<f64>,
    rgb: Option<Converter>,
    thumb: Option<Converter>,
    prev_thumb: Option<Vec<u8>>,
}

impl Selection {
    fn new(sampler: &Sampler, keyframes_only: bool, rotation: u32) -> Self {
        Self {
            keyframes: sampler.config.keyframes,
            keyframes_only,
            interval: sampler.interval(),
            spacing: 1.0 / sampler.config.max_rate,
            max_gap: sampler.config.max_gap,
            scene_threshold: sampler.config.scene_threshold,
            rotation,
            last_sampled: None,
            prev: None,
            last_seen: None,
            rgb: None,
            thumb: None,
            prev_thumb: None,
        }
    }

    fn prev_t(&self) -> Option<f64> {
        self.last_seen
    }

    /// Considers one decoded frame; returns the frames to emit (the held previous frame
    /// and/or this one), in time order.
    fn offer(
        &mut self,
        frame: &mut AvFrame,
        t: f64,
        path: &str,
    ) -> Result<Vec<SampledFrame>, MediaError> {
        let mut out = Vec::new();
        if self.last_seen.is_some_and(|p| t + EPS < p) {
            // Out-of-order or duplicate timestamps: keep time monotonic for the gap logic.
            return Ok(out);
        }
        self.last_seen = Some(t);
        let scene = self.scene_change(frame, path)?;
        // Close a gap with the frame before it, before this frame would open it.
        let gap_ahead = self.last_sampled.is_some_and(|last| {
            t - last > self.max_gap + EPS
                && self
                    .prev
                    .as_ref()
                    .is_some_and(|(_, held_t)| *held_t > last + EPS)
        });
        if gap_ahead && let Some((held, held_t)) = self.prev.take() {
            let image = self.convert(&held, path)?;
            out.push(SampledFrame {
                t: held_t,
                reason: SampleReason::Uniform,
                image,
            });
            self.last_sampled = Some(held_t);
        }
        let reason = match self.last_sampled {
            None => Some(SampleReason::First),
            // Keyframes-only decoding got thinned keyframes already.
            Some(_) if self.keyframes_only => Some(SampleReason::Keyframe),
            Some(last) if self.keyframes && frame.is_key() && t - last + EPS >= self.spacing => {
                Some(SampleReason::Keyframe)
            }
            // Due by the rate, or this frame alone already exceeds the gap bound.
            Some(last) if t + EPS >= last + self.interval || t - last > self.max_gap + EPS => {
                Some(SampleReason::Uniform)
            }
            Some(last) if scene && t - last + EPS >= self.spacing => {
                Some(SampleReason::SceneChange)
            }
            Some(_) => None,
        };
        if let Some(reason) = reason {
            let image = self.convert(frame, path)?;
            out.push(SampledFrame { t, reason, image });
            self.last_sampled = Some(t);
            self.prev = None;
        } else {
            // Hold this frame (swap buffers so the decoder can reuse the old one).
            let mut held = self.prev.take().map_or_else(AvFrame::empty, |(f, _)| f);
            std::mem::swap(&mut held, frame);
            self.prev = Some((held, t));
        }
        Ok(out)
    }

    /// At end of stream: sample the final frame if the tail would otherwise exceed the gap.
    fn finish(
        &mut self,
        frame_duration: f64,
        path: &str,
    ) -> Result<Option<SampledFrame>, MediaError> {
        let (Some(last), Some((held, held_t))) = (self.last_sampled, self.prev.take()) else {
            return Ok(None);
        };
        if held_t + frame_duration - last <= self.max_gap + EPS {
            return Ok(None);
        }
        let image = self.convert(&held, path)?;
        Ok(Some(SampledFrame {
            t: held_t,
            reason: SampleReason::Last,
            image,
        }))
    }

    fn convert(&mut self, frame: &AvFrame, path: &str) -> Result<Frame, MediaError> {
        let conv =
            Converter::for_frame(&mut self.rgb, frame, ff::format::Pixel::RGB24, None, path)?;
        let (w, h, data) = conv.run(frame, path)?;
        Ok(Frame::new(w, h, data).rotated(self.rotation))
    }

    fn scene_change(&mut self, frame: &AvFrame, path: &str) -> Result<bool, MediaError> {
        if self.scene_threshold <= 0.0 || self.keyframes_only {
            return Ok(false);
        }
        let conv = Converter::for_frame(
            &mut self.thumb,
            frame,
            ff::format::Pixel::GRAY8,
            Some((THUMB, THUMB)),
            path,
        )?;
        let (_, _, thumb) = conv.run(frame, path)?;
        let changed = self.prev_thumb.as_ref().is_some_and(|prev| {
            let diff: u64 = prev
                .iter()
                .zip(&thumb)
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum();
            diff as f64 / (thumb.len() as f64 * 255.0) > self.scene_threshold
        });
        self.prev_thumb = Some(thumb);
        Ok(changed)
    }
}

/// A swscale context, rebuilt when the decoded picture size or format changes mid-stream.
struct Converter {
    ctx: scaling::Context,
    key: (ff::format::Pixel, u32, u32),
    out: AvFrame,
}

impl Converter {
    fn for_frame<'a>(
        slot: &'a mut Option<Converter>,
        frame: &AvFrame,
        dst: ff::format::Pixel,
        size: Option<(u32, u32)>,
        path: &str,
    ) -> Result<&'a mut Converter, MediaError> {
        let key = (frame.format(), frame.width(), frame.height());
        if slot.as_ref().is_none_or(|c| c.key != key) {
            let (dw, dh) = size.unwrap_or((frame.width(), frame.height()));
            // Bicubic matches the ffmpeg CLI's default conversion, so frames are
            // pixel-identical to `ffmpeg -pix_fmt rgb24` output.
            let ctx =
                scaling::Context::get(key.0, key.1, key.2, dst, dw, dh, scaling::Flags::BICUBIC)
                    .map_err(|e| {
                        corrupt(path, &format!("cannot convert {:?} pictures: {e}", key.0))
                    })?;
            *slot = Some(Converter {
                ctx,
                key,
                out: AvFrame::empty(),
            });
        }
        slot.as_mut()
            .ok_or_else(|| corrupt(path, "converter unavailable"))
    }

    /// Converts and copies out of FFmpeg's padded planes into a packed buffer.
    fn run(&mut self, frame: &AvFrame, path: &str) -> Result<(usize, usize, Vec<u8>), MediaError> {
        self.ctx
            .run(frame, &mut self.out)
            .map_err(|e| corrupt(path, &format!("pixel conversion failed: {e}")))?;
        let (w, h) = (self.out.width() as usize, self.out.height() as usize);
        let bpp = if self.out.format() == ff::format::Pixel::GRAY8 {
            1
        } else {
            3
        };
        let stride = self.out.stride(0);
        let plane = self.out.data(0);
        let mut data = Vec::with_capacity(w * h * bpp);
        for row in 0..h {
            data.extend_from_slice(&plane[row * stride..row * stride + w * bpp]);
        }
        Ok((w, h, data))
    }
}

#[cfg(test)]
mod tests {
    use super::thin;

    fn kept(keys: &[f64], spacing: f64, interval: f64, end: f64) -> Vec<f64> {
        let index: Vec<(f64, usize)> = keys.iter().copied().zip(0..).collect();
        let set = thin(&index, spacing, interval, end);
        index
            .iter()
            .filter(|k| set.contains(&k.1))
            .map(|k| k.0)
            .collect()
    }

    #[test]
    fn all_intra_keyframes_are_thinned_to_the_rate() {
        // 25 keyframes a second for 4 s, at most 4 a second kept.
        let keys: Vec<f64> = (0..100).map(|i| f64::from(i) * 0.04).collect();
        let k = kept(&keys, 0.25, 1.0, 4.0);
        assert!(k.len() <= 17, "{k:?}");
        for w in k.windows(2) {
            assert!(
                w[1] - w[0] >= 0.25 - 1e-6 && w[1] - w[0] <= 1.0 + 1e-6,
                "{k:?}"
            );
        }
        assert!(4.0 - k.last().unwrap() <= 1.0);
    }

    #[test]
    fn thinning_never_opens_a_gap() {
        // Skipping 0.2 would leave 0 -> 1.15, over the 1 s interval: it stays.
        assert_eq!(
            kept(&[0.0, 0.2, 1.15], 0.25, 1.0, 2.0),
            vec![0.0, 0.2, 1.15]
        );
        // Spread-out keyframes are all kept.
        assert_eq!(
            kept(&[0.0, 0.5, 1.0, 1.5], 0.25, 1.0, 2.0),
            vec![0.0, 0.5, 1.0, 1.5]
        );
    }
}
