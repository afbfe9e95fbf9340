//! The segmenter: fragmented-MP4 segments cut on keyframes, no re-encode. Decrypted and
//! joined (init + media segments), they are the source's streams, frame for frame: the
//! same decoded video and audio (per-frame MD5 from the ffmpeg CLI, the reference), for
//! every codec HLS can carry; any other codec is refused by name, never stored wrong.

use std::path::Path;

use crate::util::{asset, ffmpeg, ffprobe_duration, md5s};
use vcw::config::{Limits, Transcode};
use vcw::media::{MediaError, MediaSource, Piece, SegmentInfo, count_packets, playlist, segment};

/// Segments `src` and joins the pieces into one fMP4 file at `out`.
fn segment_to(src: &Path, target: f64, out: &Path) -> Result<Vec<SegmentInfo>, MediaError> {
    segment_with(src, target, out, &Limits::default())
}

/// [`segment_to`] under `limits`.
fn segment_with(
    src: &Path,
    target: f64,
    out: &Path,
    limits: &Limits,
) -> Result<Vec<SegmentInfo>, MediaError> {
    let mut joined = Vec::new();
    let mut inits = 0;
    let written = segment(
        &MediaSource::file(src),
        target,
        limits,
        Transcode::Off,
        |piece| {
            match piece {
                Piece::Init(data) => {
                    assert_eq!(&data[4..8], b"ftyp", "the init segment opens with ftyp");
                    assert!(joined.is_empty(), "the init segment comes first");
                    inits += 1;
                    joined.extend_from_slice(&data);
                }
                Piece::Media(s) => {
                    assert!(s.data.windows(4).any(|w| w == b"moof"), "a media segment");
                    joined.extend_from_slice(&s.data);
                }
            }
            Ok(())
        },
    )?;
    assert_eq!(inits, 1);
    std::fs::write(out, &joined).unwrap();
    // What went in is what reads back, stream by stream, packet for packet.
    let stored = count_packets(&MediaSource::file(out), &Limits::default()).unwrap();
    assert_eq!(stored, written.streams);
    Ok(written.segments)
}

/// Per-frame MD5s of the decoded `stream` (`v:0`, `a:0`) of a file.
fn frame_md5s(path: &Path, stream: &str) -> Vec<String> {
    md5s(path.to_str().unwrap(), stream, false, None)
}

/// Presentation time (s) of each decoded video frame, as ffprobe shows it.
fn frame_times(path: &Path) -> Vec<f64> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["frame=best_effort_timestamp_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

#[test]
fn segments_reassemble_into_the_source() {
    let dir = tempfile::tempdir().unwrap();
    for (clip, gop) in [
        ("samples/generated/longgop.mp4", 10.0),
        ("samples/bikes.mp4", 5.0),
    ] {
        let src = asset(clip);
        let path = dir.path().join("joined.mp4");
        let infos = segment_to(&src, 4.0, &path).unwrap();
        let source = ffprobe_duration(&src);
        let got = ffprobe_duration(&path);
        assert!((got - source).abs() <= gop, "{clip}: {got} s vs {source} s");
        // Segments are at least the target long (but the last), and start on keyframes.
        for s in &infos[..infos.len() - 1] {
            assert!(s.duration >= 4.0 - 1e-6, "{s:?}");
        }
        let total: f64 = infos.iter().map(|s| s.duration).sum();
        assert!(
            (total - source).abs() <= 0.1,
            "{clip}: segment durations sum to {total}"
        );
        let m3u8 = playlist(&infos, "init.mp4", |i| format!("{i}.m4s"));
        assert_eq!(m3u8.matches("#EXTINF").count(), infos.len());
        assert_eq!(frame_md5s(&path, "v:0"), frame_md5s(&src, "v:0"), "{clip}");
    }
}

/// A keyframe interval holding more than `limits.max_segment_bytes` is cut mid-GOP, so a
/// segment (which is built in memory) stays near the cap whatever the GOP; the playlist
/// then drops `#EXT-X-INDEPENDENT-SEGMENTS`, and the joined segments are still the
/// source, frame for frame.
#[test]
fn a_long_gop_is_cut_at_the_segment_size_cap() {
    let dir = tempfile::tempdir().unwrap();
    // 40 s of 720p with a keyframe every 10 s: about 1.5 MiB per GOP.
    let src = asset("samples/generated/longgop.mp4");
    let path = dir.path().join("joined.mp4");
    let cap = 1u64 << 20;
    let limits = Limits {
        max_segment_bytes: cap,
        ..Limits::default()
    };
    let infos = segment_with(&src, 4.0, &path, &limits).unwrap();
    let cut = infos.iter().filter(|s| s.mid_gop).count();
    assert!(cut >= 2, "{infos:?}");
    // The cap, plus the packet that crossed it and the fragment's boxes.
    let largest = infos.iter().map(|s| s.bytes).max().unwrap();
    assert!(largest < cap + (512 << 10), "{infos:?}");
    let m3u8 = playlist(&infos, "init.mp4", |i| format!("{i}.m4s"));
    assert!(!m3u8.contains("INDEPENDENT-SEGMENTS"), "{m3u8}");
    assert_eq!(frame_md5s(&path, "v:0"), frame_md5s(&src, "v:0"));
    eprintln!(
        "{} segments ({cut} cut mid-GOP), largest {} KiB",
        infos.len(),
        largest >> 10
    );
}

/// One row of the codec matrix: encoder arguments, container, and whether fMP4 HLS
/// carries it.
pub struct Case {
    pub name: String,
    video: &'static [&'static str],
    audio: Option<&'static [&'static str]>,
    ext: &'static str,
    pub streamable: bool,
    /// Decoded video frames of the 3 s clip.
    pub frames: usize,
}

impl Case {
    /// Makes the row's 3 s clip in `dir` with the ffmpeg CLI.
    pub fn make(&self, dir: &Path) -> std::path::PathBuf {
        let src = dir.join(format!("{}.{}", self.name, self.ext));
        let mut args = vec!["-f", "lavfi", "-i", "testsrc=size=96x64:rate=10", "-t", "3"];
        if self.audio.is_some() {
            args.extend([
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "3",
            ]);
        }
        args.extend(self.video);
        args.extend(self.audio.unwrap_or(&[]));
        args.extend(["-threads", "1"]);
        args.push(src.to_str().unwrap());
        ffmpeg(&args);
        src
    }
}

const H264: &[&str] = &[
    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10", "-bf", "2",
];
const HEVC: &[&str] = &[
    "-c:v",
    "libx265",
    "-x265-params",
    "log-level=none",
    "-g",
    "10",
];
const VP9: &[&str] = &[
    "-c:v",
    "libvpx-vp9",
    "-b:v",
    "200k",
    "-g",
    "10",
    "-deadline",
    "realtime",
];
/// H.264 shot on a phone held upright: a 90° display matrix.
const H264_ROTATED: &[&str] = &[
    "-c:v",
    "libx264",
    "-pix_fmt",
    "yuv420p",
    "-g",
    "10",
    "-metadata:s:v:0",
    "rotate=90",
];
/// H.264 at a variable frame rate: frames 0, 1, 4, 5, 8, … kept with their timestamps.
const H264_VFR: &[&str] = &[
    "-c:v",
    "libx264",
    "-pix_fmt",
    "yuv420p",
    "-g",
    "10",
    "-vf",
    "select=lt(mod(n\\,4)\\,2)",
    "-vsync",
    "vfr",
];
const VP8: &[&str] = &["-c:v", "libvpx", "-b:v", "200k", "-g", "10"];
const AV1: &[&str] = &[
    "-c:v",
    "libaom-av1",
    "-cpu-used",
    "8",
    "-b:v",
    "100k",
    "-g",
    "10",
];
const MPEG4: &[&str] = &["-c:v", "mpeg4", "-g", "10"];
const MJPEG: &[&str] = &["-c:v", "mjpeg"];
const THEORA: &[&str] = &["-c:v", "libtheora", "-g", "10"];
const AAC: &[&str] = &["-c:a", "aac", "-b:a", "64k"];
const PCM: &[&str] = &["-c:a", "pcm_s16le"];
const OPUS: &[&str] = &["-c:a", "libopus", "-b:a", "48k"];
const VORBIS: &[&str] = &["-c:a", "libvorbis"];
const MP3: &[&str] = &["-c:a", "libmp3lame"];
const AC3: &[&str] = &["-c:a", "ac3"];

/// The video codecs users plausibly send, each with whether HLS (fMP4) carries it.
const VIDEOS: [(&str, &[&str], bool); 7] = [
    ("h264", H264, true),
    ("hevc", HEVC, true),
    ("vp8", VP8, false),
    ("vp9", VP9, true),
    ("av1", AV1, true),
    ("mpeg4", MPEG4, false),
    ("mjpeg", MJPEG, false),
];
/// The audio codecs crossed with them (None: a silent video).
const AUDIOS: [(&str, Option<&[&str]>, bool); 5] = [
    ("aac", Some(AAC), true),
    ("opus", Some(OPUS), true),
    ("vorbis", Some(VORBIS), false),
    ("mp3", Some(MP3), true),
    ("none", None, true),
];

/// The container a video and audio codec pair usually arrives in: WebM for what
/// browsers record, MP4 for what phones and encoders write, AVI for the old
/// cameras' codecs, Matroska for everything the others do not allow.
fn container(video: &str, audio: &str) -> &'static str {
    match (video, audio) {
        ("vp8" | "vp9" | "av1", "opus" | "vorbis" | "none") => "webm",
        ("h264" | "hevc" | "av1", "aac" | "mp3" | "none") => "mp4",
        ("mpeg4" | "mjpeg", "mp3" | "none") => "avi",
        ("mpeg4", "aac") => "mp4",
        _ => "mkv",
    }
}

/// Every video codec crossed with every audio codec, plus the rows that test a
/// container, a codec or a property the cross does not reach.
pub fn matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    for (v, video, v_ok) in VIDEOS {
        for (a, audio, a_ok) in AUDIOS {
            cases.push(Case {
                name: format!("{v}-{a}"),
                video,
                audio,
                ext: container(v, a),
                streamable: v_ok && a_ok,
                frames: 30,
            });
        }
    }
    let special = |name: &str, video, audio, ext, streamable, frames| Case {
        name: name.to_string(),
        video,
        audio,
        ext,
        streamable,
        frames,
    };
    cases.extend([
        special("h264-mp3-mov", H264, Some(MP3), "mov", true, 30),
        special("hevc-aac-mov", HEVC, Some(AAC), "mov", true, 30),
        special("h264-ac3-ts", H264, Some(AC3), "ts", true, 30),
        special("h264-aac-ts", H264, Some(AAC), "ts", true, 30),
        special("hevc-aac-mkv", HEVC, Some(AAC), "mkv", true, 30),
        special("av1-opus-mkv", AV1, Some(OPUS), "mkv", true, 30),
        special("h264-rotated", H264_ROTATED, Some(AAC), "mp4", true, 30),
        special("h264-vfr", H264_VFR, None, "mkv", true, 16),
        special("mpeg4-mp3-avi", MPEG4, Some(MP3), "avi", false, 30),
        special("mjpeg-pcm-avi", MJPEG, Some(PCM), "avi", false, 30),
        special("theora-vorbis-ogg", THEORA, Some(VORBIS), "ogg", false, 30),
    ]);
    cases
}

#[test]
fn codec_matrix_streams_what_hls_carries_and_names_what_it_cannot() {
    let cases = matrix();
    let dir = tempfile::tempdir().unwrap();
    // Two rows at a time: one per core (each ffmpeg child is run with one thread).
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    check_row(case, dir.path());
                }
            });
        }
    });
}

/// Makes one row's clip with the ffmpeg CLI, segments it, and compares the joined
/// segments with the source.
fn check_row(case: &Case, dir: &Path) {
    {
        let src = case.make(dir);
        let out = dir.join(format!("{}.joined.mp4", case.name));
        match segment_to(&src, 1.0, &out) {
            Ok(infos) => {
                assert!(
                    case.streamable,
                    "{}: stored, though HLS cannot carry it",
                    case.name
                );
                assert!(infos.len() >= 2, "{}: {infos:?}", case.name);
                let video = frame_md5s(&out, "v:0");
                assert_eq!(video.len(), case.frames, "{}: every frame", case.name);
                assert_eq!(video, frame_md5s(&src, "v:0"), "{}: video", case.name);
                // Each frame shows when it did in the source (variable frame rate too).
                let (got, want) = (frame_times(&out), frame_times(&src));
                assert_eq!(got.len(), want.len(), "{}", case.name);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 0.002,
                        "{}: frame at {g} s, not {w} s",
                        case.name
                    );
                }
                if case.audio.is_some() {
                    // Every audio packet, bit for bit. Decoded, the same but for the first
                    // and the last frame: the encoder's priming (AAC 1024 samples, MP3
                    // part of a frame) and end padding (Opus), which the source container
                    // trims, are played from a fragmented MP4 of FFmpeg 5.1, vcw's as much
                    // as the ffmpeg CLI's own remux.
                    // AAC in MPEG-TS is ADTS: its packets lose their 7-byte headers in
                    // MP4, so only the decoded audio can compare there.
                    let packets = md5s(out.to_str().unwrap(), "a:0", true, None);
                    assert!(!packets.is_empty(), "{}: audio", case.name);
                    let adts = case.ext == "ts" && case.audio == Some(AAC);
                    let want = md5s(src.to_str().unwrap(), "a:0", true, None);
                    if adts {
                        assert_eq!(packets.len(), want.len(), "{}: audio", case.name);
                    } else {
                        assert_eq!(packets, want, "{}: audio", case.name);
                    }
                    let (got, want) = (frame_md5s(&out, "a:0"), frame_md5s(&src, "a:0"));
                    let extra = got.len() - want.len();
                    assert!(extra <= 1, "{}: {extra} more audio frames", case.name);
                    let middle = |v: &[String], skip: usize| v[skip + 1..v.len() - 1].to_vec();
                    assert_eq!(
                        middle(&got, extra),
                        middle(&want, 0),
                        "{}: decoded",
                        case.name
                    );
                }
            }
            Err(MediaError::NotStreamable { codec, .. }) => {
                assert!(!case.streamable, "{}: refused {codec}", case.name);
            }
            Err(e) => panic!("{}: {e}", case.name),
        }
    }
}
