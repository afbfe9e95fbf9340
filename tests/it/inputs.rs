//! Every bad input gets a clear error naming the file and the problem: exit status 2, a
//! JSON error document, never a panic or a hang.

use std::path::{Path, PathBuf};

use crate::util::{asset, ffmpeg, run_json, scan, vcw};

/// Scans one bad file and checks the error names it and contains `needle`.
fn expect_error(file: &Path, extra: &[&str], needle: &str) {
    let run = scan(&[file], extra);
    assert_eq!(
        run.code,
        2,
        "exit status for {}: {}",
        file.display(),
        run.stderr
    );
    assert_eq!(run.docs.len(), 1, "one error document");
    let err = run.docs[0]["error"].as_str().expect("error field");
    let name = file.display().to_string();
    assert!(err.contains(&name), "error {err:?} names the file");
    assert!(
        err.contains(needle),
        "error {err:?} should mention {needle:?}"
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

/// A copy of `src` with the index (moov) before the data, as uploads usually are.
fn faststart_copy(dir: &Path, src: &Path) -> PathBuf {
    let out = dir.join("faststart.mp4");
    let (src, dest) = (src.to_str().unwrap(), out.to_str().unwrap());
    ffmpeg(&["-i", src, "-c", "copy", "-movflags", "+faststart", dest]);
    out
}

fn tmp_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn missing_empty_and_non_video_files() {
    let dir = tempfile::tempdir().unwrap();
    expect_error(&dir.path().join("nope.mp4"), &[], "cannot read");
    expect_error(&tmp_file(dir.path(), "empty.mp4", b""), &[], "empty file");
    expect_error(
        &tmp_file(dir.path(), "notes.mp4", b"just some text\n"),
        &[],
        "not a video file",
    );
    expect_error(dir.path(), &[], "not a regular file");
}

#[test]
fn audio_only_file_has_no_video_stream() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("tone.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=duration=1",
        audio.to_str().unwrap(),
    ]);
    expect_error(&audio, &[], "no video stream (streams found: audio)");
}

#[test]
fn truncated_files_are_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let src = asset("samples/carphone_pristine.mp4");
    // moov first (faststart), data cut in half: headers promise 4 s, data holds ~2 s.
    let faststart = faststart_copy(dir.path(), &src);
    let bytes = std::fs::read(&faststart).unwrap();
    let cut = tmp_file(dir.path(), "cut.mp4", &bytes[..bytes.len() / 2]);
    expect_error(&cut, &[], "truncated");
    // moov last: cutting it off leaves no index at all.
    let original = std::fs::read(&src).unwrap();
    let headless = tmp_file(dir.path(), "no-moov.mp4", &original[..original.len() / 2]);
    expect_error(&headless, &[], "not a video file");
}

#[test]
fn garbage_after_a_valid_header_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(asset("samples/bikes.mp4")).unwrap();
    let mut bytes = original[..64].to_vec();
    let mut x: u32 = 12345;
    bytes.extend((0..200_000).map(|_| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (x >> 16) as u8
    }));
    let f = tmp_file(dir.path(), "garbage.mp4", &bytes);
    let run = scan(&[&f], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.docs[0]["error"]
            .as_str()
            .unwrap()
            .contains("garbage.mp4")
    );
}

#[test]
fn damaged_data_inside_a_valid_file_is_scanned_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let src = asset("samples/carphone_pristine.mp4");
    let faststart = faststart_copy(dir.path(), &src);
    let mut bytes = std::fs::read(&faststart).unwrap();
    for b in &mut bytes[200_000..200_400] {
        *b ^= 0x5a;
    }
    let f = tmp_file(dir.path(), "damaged.mp4", &bytes);
    let run = scan(&[&f], &[]);
    // The decoder conceals the damage: the scan completes and still covers the video.
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    assert!(run.docs[0]["sampling"]["largest_gap"].as_f64().unwrap() <= 1.0 + 1e-6);
}

#[test]
fn limits_are_enforced_with_the_setting_named() {
    let bikes = asset("samples/bikes.mp4");
    let mut cmd = vcw();
    cmd.env("VCW__LIMITS__MAX_WIDTH", "320")
        .arg("scan")
        .arg(&bikes);
    let run = run_json(&mut cmd);
    assert_eq!(run.code, 2);
    let err = run.docs[0]["error"].as_str().unwrap();
    assert!(
        err.contains("640x272") && err.contains("limits.max_width"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vcw.toml");
    std::fs::write(
        &config,
        "[limits]\nmax_duration = 5.0\nmax_file_size = 600000\n",
    )
    .unwrap();
    expect_error(
        &bikes,
        &["--config", config.to_str().unwrap()],
        "limits.max_duration",
    );
    let bunny = asset("samples/bigbuckbunny.mp4");
    expect_error(
        &bunny,
        &["--config", config.to_str().unwrap()],
        "limits.max_file_size",
    );
}

#[test]
fn one_bad_file_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tmp_file(dir.path(), "empty.mp4", b"");
    let good = asset("samples/carphone_pristine.mp4");
    let run = scan(&[&empty, &good], &[]);
    assert_eq!(run.code, 2, "errors dominate the exit status");
    assert_eq!(run.docs.len(), 2);
    assert!(run.docs[0]["error"].is_string());
    assert_eq!(run.docs[1]["verdict"], "allow");
}

#[test]
fn bad_configuration_and_models_name_the_fix() {
    let good = asset("samples/carphone_pristine.mp4");
    let run = scan(&[&good], &["--max-gap", "0"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("max_gap"), "{}", run.stderr);

    let dir = tempfile::tempdir().unwrap();
    let run = scan(&[&good], &["--models-dir", dir.path().to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("make models"), "{}", run.stderr);

    // A model file with the wrong bytes is refused by digest, before ONNX Runtime sees it.
    for f in [
        "open-nsfw.onnx",
        "320n.onnx",
        "age-v1.onnx",
        "shape_predictor_5_face_landmarks.dat",
    ] {
        std::fs::copy(asset(&format!("models/{f}")), dir.path().join(f)).unwrap();
    }
    let tampered = dir.path().join("320n.onnx");
    let mut bytes = std::fs::read(&tampered).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&tampered, bytes).unwrap();
    let run = scan(&[&good], &["--models-dir", dir.path().to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("sha256") && run.stderr.contains("320n.onnx"),
        "{}",
        run.stderr
    );

    let run = scan(
        &[&good],
        &["--ort-library", "/nonexistent/libonnxruntime.so"],
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("make setup"), "{}", run.stderr);
}

#[test]
fn classify_rejects_non_images_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let txt = tmp_file(dir.path(), "x.png", b"not a png");
    let mut cmd = vcw();
    cmd.arg("classify").arg(&txt);
    let run = run_json(&mut cmd);
    assert_eq!(run.code, 2);
    let err = run.docs[0]["error"].as_str().unwrap();
    assert!(
        err.contains("x.png") && err.contains("not a PNG or JPEG"),
        "{err}"
    );
}

/// Limits hold on what a file holds, not on what it declares: an all-intra clip (every
/// frame a keyframe) is sampled at `sampler.max_rate`, not frame by frame; its frame
/// count is checked by the index pass; so is the duration of a raw stream that declares
/// none; and the sampled-frame cap stops a scan that would classify more.
#[test]
fn decoded_media_is_held_to_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let intra = dir.path().join("intra.mp4");
    let raw = dir.path().join("raw.h264");
    for (out, seconds) in [(&intra, "8"), (&raw, "12")] {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=25",
            "-t",
            seconds,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "1",
            out.to_str().unwrap(),
        ]);
    }
    let run = scan(&[&intra], &[]);
    let doc = &run.docs[0];
    assert_eq!(doc["sampling"]["keyframes_only"], true, "{doc}");
    let sampled = crate::util::f64s(&doc["sampled"]);
    // 200 keyframes in 8 s; at most 4 a second are decoded and classified.
    assert!(
        (25..=33).contains(&sampled.len()),
        "{} sampled: {sampled:?}",
        sampled.len()
    );
    assert!(doc["sampling"]["decoded_frames"].as_u64().unwrap() <= 33);
    assert!(sampled.windows(2).all(|w| w[1] - w[0] <= 1.0 + 1e-6));
    assert!(sampled[0] == 0.0 && *sampled.last().unwrap() >= 7.0);

    let limit = |toml: &str| {
        let config = dir.path().join("limits.toml");
        std::fs::write(&config, format!("[limits]\n{toml}\n")).unwrap();
        config.to_str().unwrap().to_string()
    };
    expect_error(
        &intra,
        &["--config", &limit("max_frames = 100")],
        "limits.max_frames",
    );
    expect_error(
        &intra,
        &[
            "--config",
            &limit("max_duration = 10.0\nmax_sampled_frames = 20"),
        ],
        "limits.max_sampled_frames",
    );
    expect_error(
        &raw,
        &["--config", &limit("max_duration = 10.0")],
        "limits.max_duration",
    );
    // A raw stream has no timestamps; it is scanned, thinned and timed all the same.
    let run = scan(&[&raw], &[]);
    let doc = &run.docs[0];
    assert!(
        (doc["video"]["duration"].as_f64().unwrap() - 12.0).abs() < 0.1,
        "{doc}"
    );
    assert!(
        doc["sampling"]["decoded_frames"].as_u64().unwrap() <= 49,
        "{doc}"
    );
}
