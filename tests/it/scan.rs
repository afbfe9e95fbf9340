//! `vcw scan` end to end on the real samples: the JSON schema, exit codes, and the
//! sampler's guarantees (no unexamined stretch longer than max_gap, timestamps from pts,
//! rotation, keyframe-only decoding when it suffices).

use std::path::Path;

use serde_json::Value;

use crate::util::{asset, f64s, ffmpeg, scan};

const SAMPLES: [&str; 3] = [
    "samples/bigbuckbunny.mp4",
    "samples/bikes.mp4",
    "samples/carphone_pristine.mp4",
];

/// Largest unexamined stretch, including head and tail, for a report.
fn largest_gap(doc: &Value) -> f64 {
    let sampled = f64s(&doc["sampled"]);
    let duration = doc["video"]["duration"].as_f64().unwrap();
    let mut gap = sampled[0];
    for w in sampled.windows(2) {
        assert!(w[1] > w[0], "sampled timestamps ascend: {sampled:?}");
        gap = gap.max(w[1] - w[0]);
    }
    // The tail runs to the start of the last frame; allow that one frame past it.
    let frame = 1.0 / doc["video"]["frame_rate"].as_f64().unwrap();
    gap.max(duration - frame - sampled[sampled.len() - 1])
}

#[test]
fn json_report_has_every_documented_field_for_every_sample() {
    let files: Vec<_> = SAMPLES.iter().map(|s| asset(s)).collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let run = scan(&refs, &[]);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    assert_eq!(run.docs.len(), 3);
    for doc in &run.docs {
        assert!(doc["file"].as_str().unwrap().ends_with(".mp4"));
        let verdict = doc["verdict"].as_str().unwrap();
        assert!(["allow", "review", "restrict", "block"].contains(&verdict));
        assert!(doc["escalate"].is_boolean());
        for r in doc["reasons"].as_array().unwrap() {
            assert!(r["code"].is_string());
            for range in r["ranges"].as_array().unwrap() {
                let [a, b] = f64s(range)[..] else {
                    panic!("range is [start, end]")
                };
                assert!(a <= b);
            }
        }
        let sampled = f64s(&doc["sampled"]);
        let frames = doc["frames"].as_array().unwrap();
        assert_eq!(sampled.len(), frames.len());
        for (t, f) in sampled.iter().zip(frames) {
            assert_eq!(f["t"].as_f64().unwrap(), *t);
            let nsfw = f["nsfw"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&nsfw));
            for d in f["detections"].as_array().unwrap() {
                assert!(d["class"].is_string() && d["score"].is_number());
                assert_eq!(d["box"].as_array().unwrap().len(), 4);
            }
            for face in f["faces"].as_array().unwrap() {
                assert_eq!(face["box"].as_array().unwrap().len(), 4);
                assert!(!face["found_by"].as_array().unwrap().is_empty());
                assert!(face["quality"]["eye_distance"].is_number());
                // A face gets an age, or a reason why it cannot be judged.
                match face["unjudgeable"].as_str() {
                    Some(why) => assert!(["too_small", "turned", "blurred"].contains(&why)),
                    None => {
                        assert!(face["age"].as_f64().unwrap() >= 0.0);
                        assert!(face["age_sd"].as_f64().unwrap() > 0.0);
                        assert!((0.0..=1.0).contains(&face["p_minor"].as_f64().unwrap()));
                    }
                }
            }
        }
        let models = doc["models"].as_array().unwrap();
        let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "open_nsfw",
                "nudenet_320n",
                "centerface",
                "age_v1",
                "faceapi_age",
                "shape_predictor_5"
            ]
        );
        assert!(
            models
                .iter()
                .all(|m| m["sha256"].as_str().unwrap().len() == 64)
        );
        assert_eq!(doc["policy_version"], "vcw-default-1");
        assert!(
            largest_gap(doc) <= 1.0 + 1e-6,
            "{}: gap {}",
            doc["file"],
            largest_gap(doc)
        );
    }
    // carphone shows a face: the age model ran on it.
    let carphone = &run.docs[2];
    assert!(
        carphone["frames"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f["faces"].as_array().unwrap().is_empty())
    );
}

#[test]
fn exit_status_says_whether_anything_was_flagged() {
    let bikes = asset("samples/bikes.mp4");
    let run = scan(&[&bikes], &[]);
    assert_eq!(
        (run.code, run.docs[0]["verdict"].as_str()),
        (0, Some("allow"))
    );
    // NudeNet fires on the cartoon in Big Buck Bunny (the reference package does too);
    // the frames around it are decoded densely, the signal is not corroborated by
    // open_nsfw there, so the built-in policy asks for review.
    let bunny = asset("samples/bigbuckbunny.mp4");
    let run = scan(&[&bunny], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let doc = &run.docs[0];
    assert_eq!(doc["verdict"], "review");
    let codes: Vec<&str> = doc["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"possible_explicit_nudity"), "{codes:?}");
    let neighbours = doc["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["sampled_because"] == "neighbour")
        .count();
    assert!(
        neighbours >= 5,
        "{neighbours} frames decoded around the spike"
    );
}

#[test]
fn long_gop_clip_leaves_no_gap_larger_than_max_gap() {
    let clip = asset("samples/generated/longgop.mp4");
    for max_gap in ["1.0", "0.5"] {
        let run = scan(&[&clip], &["--max-gap", max_gap]);
        assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
        let doc = &run.docs[0];
        // A variant of the bundled (safe) clips: never restricted or blocked.
        assert!(
            ["allow", "review"].contains(&doc["verdict"].as_str().unwrap()),
            "{}",
            doc["reasons"]
        );
        assert_eq!(
            doc["sampling"]["keyframes_only"], false,
            "keyframes are 10 s apart"
        );
        let limit: f64 = max_gap.parse().unwrap();
        let gap = largest_gap(doc);
        assert!(gap <= limit + 1e-6, "max_gap {limit}: largest gap {gap}");
        // Keyframes alone would leave 10 s gaps; the keyframes at 0, 10, 20, 30 are in.
        let sampled = f64s(&doc["sampled"]);
        for k in [0.0, 10.0, 20.0, 30.0] {
            assert!(
                sampled.iter().any(|t| (t - k).abs() < 1e-3),
                "keyframe {k} sampled"
            );
        }
        assert!(sampled.len() as f64 >= 40.0 / limit - 1.0);
    }
}

/// With a 2 s GOP and one sample a second, the second half of each GOP holds no sample:
/// it is read but not decoded, and the samples are exactly the ones full decoding takes.
#[test]
fn the_rest_of_a_gop_after_its_last_sample_is_not_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("gop2s.mp4");
    let src = asset("samples/bikes.mp4");
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-t",
        "8",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        "50",
        "-keyint_min",
        "50",
        "-x264-params",
        "scenecut=0",
        "-an",
        clip.to_str().unwrap(),
    ]);
    let lean = scan(&[&clip], &["--max-gap", "1"]);
    let doc = &lean.docs[0];
    assert_eq!(doc["sampling"]["keyframes_only"], false);
    let sampled = f64s(&doc["sampled"]);
    let expected: Vec<f64> = (0..8).map(f64::from).collect();
    assert_eq!(sampled.len(), expected.len(), "{sampled:?}");
    for (t, e) in sampled.iter().zip(&expected) {
        assert!((t - e).abs() < 1e-3, "{sampled:?}");
    }
    assert!(largest_gap(doc) <= 1.0 + 1e-6);
    // 8 s at 25 fps: each GOP is decoded up to its 1 s sample (26 frames) plus what the
    // decoder holds back; the other half is only read.
    let decoded = doc["sampling"]["decoded_frames"].as_u64().unwrap();
    let skipped = doc["sampling"]["skipped_packets"].as_u64().unwrap();
    assert!(
        decoded < 130 && skipped > 60,
        "decoded {decoded}, skipped {skipped}"
    );
    assert_eq!(decoded + skipped, 200, "every packet decoded or skipped");
}

#[test]
fn short_gop_clip_decodes_keyframes_only() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("gop.mp4");
    let src = asset("samples/bikes.mp4");
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "12",
        "-keyint_min",
        "12",
        "-x264-params",
        "scenecut=0",
        "-an",
        clip.to_str().unwrap(),
    ]);
    let run = scan(&[&clip], &[]);
    let doc = &run.docs[0];
    assert_eq!(doc["sampling"]["keyframes_only"], true);
    // 4 s at 25 fps with a keyframe every 12 frames: 9 keyframes, nothing else decoded.
    assert_eq!(doc["sampling"]["decoded_frames"], 9);
    assert_eq!(f64s(&doc["sampled"]).len(), 9);
    assert!(largest_gap(doc) <= 0.5);
}

#[test]
fn variable_frame_rate_timestamps_come_from_pts() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("vfr.mp4");
    let src = asset("samples/bikes.mp4");
    // Keep 5 frames out of every 25, with their original timestamps: bursts 0.0-0.16 s,
    // 1.0-1.16 s, ... separated by 0.84 s holes.
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-vf",
        "select='lt(mod(n\\,25)\\,5)'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-an",
        clip.to_str().unwrap(),
    ]);
    let run = scan(&[&clip], &[]);
    let sampled = f64s(&run.docs[0]["sampled"]);
    assert!(sampled.len() >= 10, "{sampled:?}");
    for t in &sampled {
        let phase = t.fract();
        assert!(
            !(0.17..=0.999).contains(&phase),
            "{t} is a real frame time: {sampled:?}"
        );
    }
    assert!(*sampled.last().unwrap() >= 9.0, "{sampled:?}");
}

#[test]
fn rotation_metadata_is_applied_like_the_ffmpeg_cli() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("rotated.mp4");
    let src = asset("samples/carphone_pristine.mp4");
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        clip.to_str().unwrap(),
    ]);
    let run = scan(&[&clip], &[]);
    let doc = &run.docs[0];
    // FFmpeg 5.1 turns this tag into a display matrix that its CLI applies as a
    // counter-clockwise quarter turn (= 270 degrees clockwise).
    assert_eq!(doc["video"]["rotation"], 270);
    // The reference: the ffmpeg CLI's autorotated first frame, classified as an image,
    // gives exactly what the scan saw on its first frame.
    let upright = dir.path().join("upright.png");
    ffmpeg(&[
        "-i",
        clip.to_str().unwrap(),
        "-frames:v",
        "1",
        "-pix_fmt",
        "rgb24",
        upright.to_str().unwrap(),
    ]);
    let mut cmd = crate::util::vcw();
    cmd.arg("classify").arg(&upright);
    let image = crate::util::run_json(&mut cmd);
    assert_eq!(image.docs[0]["width"], 144);
    assert_eq!(image.docs[0]["height"], 176);
    let first = &doc["frames"][0];
    assert!(
        !first["detections"].as_array().unwrap().is_empty(),
        "the face is found upright"
    );
    assert_eq!(first["detections"], image.docs[0]["detections"]);
    assert_eq!(first["nsfw"], image.docs[0]["nsfw"]);
}

#[test]
fn scene_changes_add_samples_when_enabled() {
    let bikes = asset("samples/bikes.mp4");
    let plain = scan(&[&bikes], &[]);
    let scenes = scan(&[&bikes], &["--scene-threshold", "0.02"]);
    let n = |r: &crate::util::Run| r.docs[0]["sampled"].as_array().unwrap().len();
    assert!(n(&scenes) > n(&plain), "{} vs {}", n(&scenes), n(&plain));
    let reasons: Vec<&str> = scenes.docs[0]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["sampled_because"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"scene_change"), "{reasons:?}");
}

/// The persistence rule and the escalation rule end to end, on constructed input. No
/// explicit imagery ships in any package we may fetch, so the explicit signal is the
/// cartoon frame of Big Buck Bunny on which NudeNet reports FEMALE_BREAST_EXPOSED, and
/// the test policy lowers `corroborating_nsfw` to 0 so that persistence alone confirms it;
/// no photo of a minor may be used either, so for the escalation an adult face
/// (scikit-image's astronaut) stands in with `minor.p_minor` and `minor.agree` at 0.
#[test]
fn explicit_signals_must_persist_and_escalation_needs_a_confirmed_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let bunny = asset("samples/bigbuckbunny.mp4");
    let frame = path("frame.png");
    ffmpeg(&[
        "-ss",
        "2",
        "-i",
        bunny.to_str().unwrap(),
        "-frames:v",
        "1",
        &frame,
    ]);
    let encode = |input: &[&str], filter: Option<&str>, out: &str| {
        let mut args: Vec<&str> = input.to_vec();
        if let Some(f) = filter {
            args.extend(["-filter_complex", f]);
        }
        args.extend([
            "-t", "3", "-r", "25", "-pix_fmt", "yuv420p", "-c:v", "libx264", out,
        ]);
        ffmpeg(&args);
    };
    // The frame held for 3 s: the signal lasts.
    let held = path("held.mp4");
    encode(&["-loop", "1", "-i", &frame], None, &held);
    // The frame flashed for one frame at the start of another clip: a spike.
    let flash = path("flash.mp4");
    let bikes = asset("samples/bikes.mp4");
    encode(
        &["-i", bikes.to_str().unwrap(), "-i", &frame],
        Some("[1:v][0:v]scale2ref[o][b];[b][o]overlay=enable='lt(t,0.04)'"),
        &flash,
    );
    // The frame held, with a face in the corner.
    let astronaut = asset(".cache/testdata/astronaut.png");
    let with_face = path("face.png");
    ffmpeg(&[
        "-i",
        &frame,
        "-i",
        astronaut.to_str().unwrap(),
        "-filter_complex",
        "[1:v]scale=-2:300[a];[0:v][a]overlay=W-w:H-h",
        &with_face,
    ]);
    let both = path("both.mp4");
    encode(&["-loop", "1", "-i", &with_face], None, &both);

    let default = std::fs::read_to_string(asset("src/policy/default.toml")).unwrap();
    let lasting = default.replace("corroborating_nsfw = 0.30", "corroborating_nsfw = 0.0");
    let stand_in = lasting
        .replace("p_minor = 0.50", "p_minor = 0.0")
        .replace("agree = 0.50", "agree = 0.0");
    let policy = |name: &str, text: &str| {
        let p = path(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (lasting, stand_in) = (policy("l.toml", &lasting), policy("s.toml", &stand_in));
    let judge = |clip: &str, policy: Option<&str>| {
        let mut extra = vec![];
        if let Some(p) = policy {
            extra.extend(["--policy", p]);
        }
        let run = scan(&[Path::new(clip)], &extra);
        assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
        let doc = run.docs[0].clone();
        let codes: Vec<String> = doc["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap().to_string())
            .collect();
        (
            doc["verdict"].as_str().unwrap().to_string(),
            doc["escalate"] == true,
            codes,
        )
    };
    // Built-in policy: a cartoon frame, even held, is not corroborated: review.
    assert_eq!(judge(&held, None).0, "review");
    // Persisting and (by the test policy) corroborated: restrict.
    let (verdict, _, codes) = judge(&held, Some(&lasting));
    assert_eq!(
        (verdict.as_str(), codes[0].as_str()),
        ("restrict", "explicit_nudity")
    );
    // The same frame for one frame only: not persisting, review.
    let (verdict, _, codes) = judge(&flash, Some(&lasting));
    assert_eq!(verdict, "review");
    assert!(
        codes.contains(&"possible_explicit_nudity".to_string()),
        "{codes:?}"
    );
    // Confirmed explicit content next to a (stand-in) minor: block and escalate.
    let (verdict, escalate, codes) = judge(&both, Some(&stand_in));
    assert_eq!((verdict.as_str(), escalate), ("block", true), "{codes:?}");
    assert_eq!(codes[0], "minor_with_explicit_content");
    // Unconfirmed (built-in corroboration) next to the stand-in: a person looks first.
    let unconfirmed = policy(
        "u.toml",
        &default
            .replace("p_minor = 0.50", "p_minor = 0.0")
            .replace("agree = 0.50", "agree = 0.0"),
    );
    let (verdict, escalate, codes) = judge(&both, Some(&unconfirmed));
    assert_eq!((verdict.as_str(), escalate), ("review", false), "{codes:?}");
    assert_eq!(codes[0], "minor_with_possible_explicit_content");
}
