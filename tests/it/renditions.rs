//! What `vcw serve` stores of an upload, end to end: a codec HLS carries is played back
//! by the ffmpeg CLI through the served playlist with every frame intact; a codec it
//! cannot carry is kept as the sealed original, served back byte for byte.

use std::path::Path;

use serde_json::Value;

use crate::serve::{Server, is_final, put_video, send, state, token, wait_for};
use crate::util::{audio_samples, ffmpeg, md5s, psnr};
use vcw::api::Role;

/// A 4 s clip of `video` + `audio` encoder arguments in `name`.
fn clip(dir: &Path, name: &str, codecs: &[&str]) -> std::path::PathBuf {
    let out = dir.join(name);
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=128x96:rate=10",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "4",
        "-g",
        "10",
    ];
    args.extend_from_slice(codecs);
    args.push(out.to_str().unwrap());
    ffmpeg(&args);
    out
}

const X264: [&str; 4] = ["-c:v", "libx264", "-pix_fmt", "yuv420p"];
const ROTATED_H264_AAC: &[&str] = &[
    X264[0],
    X264[1],
    X264[2],
    X264[3],
    "-metadata:s:v:0",
    "rotate=90",
    "-c:a",
    "aac",
];
const VP8_VORBIS: &[&str] = &["-c:v", "libvpx", "-b:v", "200k", "-c:a", "libvorbis"];
const H264_VORBIS: &[&str] = &[X264[0], X264[1], X264[2], X264[3], "-c:a", "libvorbis"];
/// An old camera: Motion JPEG at an odd size, 16-bit PCM at 22.05 kHz.
const MJPEG_PCM: &[&str] = &[
    "-vf",
    "scale=129:97",
    "-c:v",
    "mjpeg",
    "-c:a",
    "pcm_s16le",
    "-ar",
    "22050",
];
const DUAL_AUDIO: &[&str] = &[
    "-map", "0:v", "-map", "1:a", "-map", "1:a", X264[0], X264[1], X264[2], X264[3], "-c:a", "aac",
];

/// The whole codec matrix (every video codec crossed with every audio codec, in the
/// containers they come in, plus rotation, variable frame rate, MPEG-TS, MOV and AVI
/// rows) and an upload with two audio tracks, each uploaded through `vcw serve`.
#[test]
fn every_upload_plays_back_intact_or_is_kept_as_its_original() {
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let reviewer = token(dir.path(), Role::Reviewer);
    let s = Server::start(dir.path(), &[("VCW__SERVER__WORKERS", "2")]);
    // (name, clip, frames, HLS carries it, the original is kept, has audio)
    let mut uploads: Vec<_> = crate::segment::matrix()
        .into_iter()
        .map(|case| {
            let file = case.make(dir.path());
            let kept = !case.streamable;
            (case.name.clone(), file, case.frames, case.streamable, kept)
        })
        .collect();
    // Two audio tracks: HLS plays the video and the first; the original keeps both.
    let dual = clip(dir.path(), "dual-audio.mkv", DUAL_AUDIO);
    uploads.push(("dual-audio".into(), dual, 40, true, true));
    let ids: Vec<String> = (0..uploads.len())
        .map(|n| format!("{:032x}", 0x9e00 + n))
        .collect();
    for ((name, file, ..), id) in uploads.iter().zip(&ids) {
        assert_eq!(put_video(&s, &up, id, file, &[]), 202, "{name}");
    }
    for ((name, file, frames, hls, original), id) in uploads.iter().zip(&ids) {
        let v: Value = wait_for(&s, &up, id, 600, is_final);
        assert_eq!(state(&v), "done", "{name}: {v}");
        assert_eq!(v["renditions"]["hls"], *hls, "{name}: {v}");
        assert_eq!(v["renditions"]["original"], *original, "{name}: {v}");
        if *hls {
            played_back_intact(&s, &reviewer, id, file, *frames);
        } else {
            no_hls(&s, &reviewer, id, &v);
        }
        if *original {
            let why = v["renditions"]["original_because"].as_str().unwrap();
            if *hls {
                assert!(why.contains("leaves out audio"), "{name}: {why}");
            }
            kept_as_original(&s, &up, &reviewer, id, file);
        }
    }
}

/// The ffmpeg CLI plays the served playlist with every frame of the upload, and its
/// audio with the upload's sample rate and sample count, within one audio frame: the
/// encoder priming and end padding the source container trims (AAC 1024 samples, an MP3
/// frame's 1152, Opus 960) are played from FFmpeg 5.1's fragmented MP4, as from the
/// ffmpeg CLI's own remux.
fn played_back_intact(s: &Server, reviewer: &str, id: &str, file: &Path, frames: usize) {
    let name = file.display();
    let playlist = s.url(&format!("/v1/videos/{id}/playlist.m3u8"));
    let source = file.to_str().unwrap();
    let played = md5s(&playlist, "v:0", false, Some(reviewer));
    assert_eq!(played.len(), frames, "{name}: every frame played");
    assert_eq!(played, md5s(source, "v:0", false, None), "{name}");
    if has_audio(source) {
        let (got, rate) = audio_samples(&playlist, Some(reviewer));
        let (want, want_rate) = audio_samples(source, None);
        assert_eq!(rate, want_rate, "{name}: sample rate");
        assert!(
            got.abs_diff(want) <= 1152,
            "{name}: {got} vs {want} samples"
        );
    }
}

/// Whether the ffprobe CLI finds an audio stream in `file`.
fn has_audio(file: &str) -> bool {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a",
            "-show_entries",
            "stream=index",
        ])
        .args(["-of", "csv=p=0", file])
        .output()
        .unwrap();
    !out.stdout.is_empty()
}

/// No HLS rendition: the status and the playlist say why.
fn no_hls(s: &Server, reviewer: &str, id: &str, v: &Value) {
    let why = v["renditions"]["not_streamable"].as_str().unwrap();
    assert!(why.contains("HLS cannot carry"), "{why}");
    assert!(v["links"]["playlist"].is_null(), "{v}");
    let playlist = s.url(&format!("/v1/videos/{id}/playlist.m3u8"));
    let (status, _, body) = send("GET", &playlist, Some(reviewer), &[], b"");
    assert_eq!(status, 409);
    assert!(String::from_utf8_lossy(&body).contains("HLS cannot carry"));
}

/// The original is served back byte for byte, whole and by range, and stored sealed.
fn kept_as_original(s: &Server, up: &str, reviewer: &str, id: &str, file: &Path) {
    let name = file.display();
    let original = s.url(&format!("/v1/videos/{id}/original"));
    let bytes = std::fs::read(file).unwrap();
    let (status, headers, got) = send("GET", &original, Some(reviewer), &[], b"");
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(got, bytes, "{name}: the original, byte for byte");
    let tail = format!("bytes={}-", bytes.len() / 2);
    let (status, _, part) = send("GET", &original, Some(reviewer), &[("range", &tail)], b"");
    assert_eq!(status, 206);
    assert_eq!(part, bytes[bytes.len() / 2..]);
    // The uploader reads the status but does not play.
    assert_eq!(send("GET", &original, Some(up), &[], b"").0, 403);
    // Nothing plaintext at rest: the stored original is sealed.
    let stored = crate::serve::stored_files(&s.dir, &format!("videos/{id}"));
    assert!(
        stored.iter().any(|k| k.ends_with("original.sealed")),
        "{stored:?}"
    );
    let needle = &bytes[bytes.len() / 2..bytes.len() / 2 + 64];
    for f in &stored {
        let sealed = std::fs::read(s.dir.join("objects").join(f)).unwrap();
        assert!(
            !sealed.windows(64).any(|w| w == needle),
            "{f} holds plaintext"
        );
    }
}

/// A stored rendition that does not read back as written (here its last segment is lost,
/// as a faulty store would lose it) fails the job with the reason, never a silent `done`;
/// the original is kept and served, and the stored rendition is gone.
#[test]
fn a_rendition_that_fails_its_check_fails_the_job_and_keeps_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let reviewer = token(dir.path(), Role::Reviewer);
    let s = Server::start(dir.path(), &[("VCW_FAULT", "lose-last-segment")]);
    let file = clip(dir.path(), "phone.mp4", ROTATED_H264_AAC);
    let id = format!("{:032x}", 0x9f00);
    assert_eq!(put_video(&s, &up, &id, &file, &[]), 202);
    let v: Value = wait_for(&s, &up, &id, 240, is_final);
    assert_eq!(state(&v), "failed", "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("did not read back as written") && error.contains("original is kept"),
        "{error}"
    );
    assert_eq!(v["verdict"], "allow", "the verdict stands: {v}");
    assert_eq!(v["renditions"]["hls"], false, "{v}");
    assert_eq!(v["renditions"]["original"], true, "{v}");
    let playlist = s.url(&format!("/v1/videos/{id}/playlist.m3u8"));
    let (status, _, body) = send("GET", &playlist, Some(&reviewer), &[], b"");
    assert_eq!(status, 409);
    assert!(String::from_utf8_lossy(&body).contains("did not read back"));
    kept_as_original(&s, &up, &reviewer, &id, &file);
    let stored = crate::serve::stored_files(&s.dir, &format!("videos/{id}"));
    assert!(
        !stored
            .iter()
            .any(|k| k.contains(".m4s") || k.contains("init.mp4")),
        "the failed rendition is removed: {stored:?}"
    );
}

/// With `server.transcode` set, what HLS cannot carry is re-encoded into a rendition that
/// plays every frame (H.264 or VP9 video, AAC audio), streams HLS carries are still copied
/// bit for bit, and the original is kept beside it. Tolerances: the same number of video
/// frames, mean PSNR >= 30 dB against the decoded source, the audio within 2048 samples
/// (AAC's last frame is padded).
#[test]
fn transcoding_adds_a_streamable_rendition_and_keeps_the_original() {
    // (file, encoder arguments, the re-encode the status names, whether the video is
    // copied bit for bit)
    let uploads: &[(&str, &[&str], &str, bool)] = &[
        ("old.webm", VP8_VORBIS, "vp8 → TARGET, vorbis → aac", false),
        (
            "camera.avi",
            MJPEG_PCM,
            "mjpeg → TARGET, pcm_s16le → aac",
            false,
        ),
        ("vorbis.mkv", H264_VORBIS, "vorbis → aac", true),
    ];
    for target in ["h264", "vp9"] {
        let dir = tempfile::tempdir().unwrap();
        let up = token(dir.path(), Role::Uploader);
        let reviewer = token(dir.path(), Role::Reviewer);
        let s = Server::start(
            dir.path(),
            &[
                ("VCW__SERVER__TRANSCODE", target),
                ("VCW__SERVER__WORKERS", "2"),
            ],
        );
        for (n, (name, codecs, transcoded, copied)) in uploads.iter().enumerate() {
            let file = clip(dir.path(), name, codecs);
            let id = format!("{:032x}", 0xa000 + n);
            assert_eq!(put_video(&s, &up, &id, &file, &[]), 202, "{name}");
            let v: Value = wait_for(&s, &up, &id, 240, is_final);
            let what = format!("{target} {name}: {v}");
            assert_eq!(state(&v), "done", "{what}");
            assert_eq!(v["renditions"]["hls"], true, "{what}");
            assert_eq!(v["renditions"]["original"], true, "{what}");
            let want = transcoded.replace("TARGET", target);
            assert_eq!(v["renditions"]["transcoded"], want.as_str(), "{what}");
            let playlist = s.url(&format!("/v1/videos/{id}/playlist.m3u8"));
            let source = file.to_str().unwrap();
            let played = md5s(&playlist, "v:0", false, Some(&reviewer));
            let original = md5s(source, "v:0", false, None);
            assert_eq!(played.len(), original.len(), "{what}: every frame");
            if *copied {
                assert_eq!(played, original, "{what}: the video is copied");
            } else {
                let db = psnr(&playlist, &reviewer, source);
                assert!(db >= 30.0, "{what}: PSNR {db} dB");
            }
            let (got, rate) = audio_samples(&playlist, Some(&reviewer));
            let (want, want_rate) = audio_samples(source, None);
            assert_eq!(rate, want_rate, "{what}: the sample rate stays");
            assert!(
                got.abs_diff(want) <= 2048,
                "{what}: {got} vs {want} samples"
            );
            kept_as_original(&s, &up, &reviewer, &id, &file);
        }
    }
}
