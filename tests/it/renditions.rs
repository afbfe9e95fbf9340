//! What `vcw serve` stores of an upload, end to end: a codec HLS carries is played back
//! by the ffmpeg CLI through the served playlist with every frame intact; a codec it
//! cannot carry is kept as the sealed original, served back byte for byte.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::serve::{Server, is_final, put_video, send, state, token, wait_for};
use crate::util::ffmpeg;
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

/// Per-frame MD5s of the decoded video of `input` (a file or a URL) by the ffmpeg CLI.
fn video_md5s(input: &str, token: Option<&str>) -> Vec<String> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    if let Some(t) = token {
        cmd.args(["-headers", &format!("Authorization: Bearer {t}\r\n")]);
    }
    let out = cmd
        .args(["-i", input, "-map", "0:v:0", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(',').nth(5).map(|m| m.trim().to_string()))
        .collect()
}

#[test]
fn every_upload_plays_back_intact_or_is_kept_as_its_original() {
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let reviewer = token(dir.path(), Role::Reviewer);
    let s = Server::start(dir.path(), &[]);

    // What Chrome's MediaRecorder makes: VP9 + Opus in WebM. Played back through the
    // served playlist by the ffmpeg CLI, every frame is the upload's.
    let webm = clip(
        dir.path(),
        "chrome.webm",
        &[
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-b:v",
            "200k",
            "-c:a",
            "libopus",
        ],
    );
    let id = "9e000000000000000000000000000001";
    assert_eq!(put_video(&s, &up, id, &webm, &[]), 202);
    let v = wait_for(&s, &up, id, 240, is_final);
    assert_eq!(state(&v), "done", "{v}");
    assert_eq!(v["renditions"]["hls"], true, "{v}");
    assert_eq!(v["renditions"]["original"], false, "{v}");
    let playlist = s.url(&format!("/v1/videos/{id}/playlist.m3u8"));
    let played = video_md5s(&playlist, Some(&reviewer));
    assert_eq!(played.len(), 40, "every frame played");
    assert_eq!(played, video_md5s(webm.to_str().unwrap(), None));

    // VP8 + Vorbis: no HLS rendition; the original is kept sealed and served back
    // byte for byte, whole and by range; the playlist says why there is none.
    let vp8 = clip(
        dir.path(),
        "old.webm",
        &["-c:v", "libvpx", "-b:v", "200k", "-c:a", "libvorbis"],
    );
    let id = "9e000000000000000000000000000002";
    assert_eq!(put_video(&s, &up, id, &vp8, &[]), 202);
    let v: Value = wait_for(&s, &up, id, 240, is_final);
    assert_eq!(state(&v), "done", "{v}");
    assert_eq!(v["renditions"]["hls"], false, "{v}");
    assert_eq!(v["renditions"]["original"], true, "{v}");
    let why = v["renditions"]["not_streamable"].as_str().unwrap();
    assert!(why.contains("vp8"), "{why}");
    assert!(v["links"]["playlist"].is_null(), "{v}");
    let (status, _, body) = send(
        "GET",
        &playlist.replace("0001", "0002"),
        Some(&reviewer),
        &[],
        b"",
    );
    assert_eq!(status, 409);
    assert!(String::from_utf8_lossy(&body).contains("vp8"));
    let original = s.url(&format!("/v1/videos/{id}/original"));
    let bytes = std::fs::read(&vp8).unwrap();
    let (status, headers, got) = send("GET", &original, Some(&reviewer), &[], b"");
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(got, bytes, "the original, byte for byte");
    let tail = format!("bytes={}-", bytes.len() - 100_000.min(bytes.len() / 2));
    let (status, _, part) = send("GET", &original, Some(&reviewer), &[("range", &tail)], b"");
    assert_eq!(status, 206);
    assert_eq!(part, bytes[bytes.len() - part.len()..]);
    // The uploader reads the status but does not play.
    assert_eq!(send("GET", &original, Some(&up), &[], b"").0, 403);
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
