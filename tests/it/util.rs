//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file `make setup` / `make clips` provides; a clear failure when it is missing.
pub fn asset(relative: &str) -> PathBuf {
    let path = repo().join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `make setup` (and `make clips` for samples/generated)",
        path.display()
    );
    path
}

pub fn vcw() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vcw"));
    // Tests must not depend on the developer's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("VCW__") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Result of one `vcw ... --json` run.
pub struct Run {
    pub code: i32,
    pub docs: Vec<Value>,
    pub stderr: String,
}

pub fn run_json(cmd: &mut Command) -> Run {
    let out: Output = cmd.arg("--json").output().expect("vcw runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let docs = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    Run {
        code: out.status.code().expect("exited normally (no signal)"),
        docs,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn scan(files: &[&Path], extra: &[&str]) -> Run {
    let mut cmd = vcw();
    cmd.arg("scan").args(extra).args(files);
    run_json(&mut cmd)
}

/// Runs the ffmpeg CLI (fixtures are made with the real tool).
pub fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg is installed (make setup)");
    assert!(status.success(), "ffmpeg {args:?} failed");
}

pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// The container duration ffprobe reports, seconds.
pub fn ffprobe_duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "ffprobe could not read {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The MD5 of every frame of `stream` (`v:0`, `a:0`) of `input` (a file or a URL, with
/// a bearer `token`) as the ffmpeg CLI computes them: decoded, or with `copy` of every
/// packet as it is. Timestamps and side data are left out.
pub fn md5s(input: &str, stream: &str, copy: bool, token: Option<&str>) -> Vec<String> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    if let Some(t) = token {
        cmd.args(["-headers", &format!("Authorization: Bearer {t}\r\n")]);
    }
    cmd.args(["-i", input, "-map", &format!("0:{stream}")]);
    if copy {
        cmd.args(["-c", "copy"]);
    }
    let out = cmd.args(["-f", "framemd5", "-"]).output().unwrap();
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

/// Decoded audio of `input` (stream `a:0`): how many samples, at what rate.
pub fn audio_samples(input: &str, token: Option<&str>) -> (u64, u64) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    if let Some(t) = token {
        cmd.args(["-headers", &format!("Authorization: Bearer {t}\r\n")]);
    }
    let out = cmd
        .args(["-i", input, "-map", "0:a:0", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{input}");
    let text = String::from_utf8_lossy(&out.stdout);
    // `#tb 0: 1/RATE`, then `stream, dts, pts, duration (samples), size, md5` per frame.
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("#tb 0: 1/"))
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("{input}: no audio time base"));
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(',').nth(3)?.trim().parse::<u64>().ok())
        .sum();
    (samples, rate)
}

/// Mean PSNR (dB) of the decoded video of `played` against `reference`'s.
pub fn psnr(played: &str, token: &str, reference: &str) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "info", "-headers"])
        .arg(format!("Authorization: Bearer {token}\r\n"))
        .args(["-i", played, "-i", reference, "-lavfi"])
        .arg("[1:v:0]scale=w=trunc(iw/2)*2:h=trunc(ih/2)*2,format=yuv420p[ref];[0:v:0][ref]psnr")
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    log.split("average:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no PSNR in {log}"))
}
