//! Malformed media, measured: mutants of the bundled clips (byte flips, zeroed runs,
//! truncation, duplicated chunks, smashed MP4 box sizes), scanned and stored by `vcw scan
//! --json --store` two processes at a time. Every mutant must end with a verdict or a
//! clear error: never a panic, a hang or unbounded memory. Prints the figures (mutants,
//! verdicts, errors by kind, peak RSS).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{asset, vcw};

/// A small deterministic generator (xorshift64*): the same mutants every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const KINDS: [&str; 5] = ["flip", "zero", "truncate", "duplicate", "box-size"];

/// Offsets of the top-level MP4 boxes and of the boxes inside `moov` (size fields).
fn box_offsets(data: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let walk = |start: usize, end: usize, out: &mut Vec<usize>| {
        let mut at = start;
        while at + 8 <= end {
            let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            out.push(at);
            if size < 8 || at + size > end {
                break;
            }
            at += size;
        }
    };
    walk(0, data.len(), &mut out);
    let moov: Vec<usize> = out
        .iter()
        .copied()
        .filter(|&at| &data[at + 4..at + 8] == b"moov")
        .collect();
    for at in moov {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        walk(at + 8, (at + size).min(data.len()), &mut out);
    }
    out
}

fn mutate(src: &[u8], kind: &str, rng: &mut Rng) -> Vec<u8> {
    let mut data = src.to_vec();
    let len = data.len();
    match kind {
        "flip" => {
            for _ in 0..1 + rng.below(64) {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
        }
        "zero" => {
            let run = 64 + rng.below(8192);
            let at = rng.below(len - run);
            data[at..at + run].fill(0);
        }
        "truncate" => data.truncate(rng.below(len)),
        "duplicate" => {
            let run = 512 + rng.below(16384);
            let from = rng.below(len - run);
            let chunk = data[from..from + run].to_vec();
            let to = rng.below(len);
            data.splice(to..to, chunk);
        }
        "box-size" => {
            let boxes = box_offsets(&data);
            let at = boxes[rng.below(boxes.len())];
            let size = match rng.below(4) {
                0 => 0,
                1 => 1,
                2 => u32::MAX,
                _ => rng.next() as u32,
            };
            data[at..at + 4].copy_from_slice(&size.to_be_bytes());
        }
        _ => unreachable!(),
    }
    data
}

/// What one `vcw scan` process did.
struct Run {
    code: Option<i32>,
    docs: Vec<Value>,
    stderr: String,
    peak_rss_kib: u64,
    timed_out: bool,
}

/// Runs `vcw scan --json --store` over `files`, polling its peak RSS, killed after `limit`.
fn scan(files: &[PathBuf], dir: &Path, limit: Duration) -> Run {
    let data = dir.join("data");
    let mut child = vcw()
        .args(["--json", "scan", "--threads", "1", "--subject", "mutant"])
        .arg("--store")
        .arg(dir.join("store"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--keyring")
        .arg(dir.join("keyring.toml"))
        .args(files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status_file = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + limit;
    let (mut peak, mut timed_out) = (0, false);
    let code = loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap().code();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let docs = (out.join().unwrap().lines())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Run {
        code,
        docs,
        stderr: err.join().unwrap(),
        peak_rss_kib: peak,
        timed_out,
    }
}

#[test]
fn mutated_clips_end_in_a_verdict_or_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // 3 clips x 5 kinds x 14 = 210 mutants.
    let mut rng = Rng(0x005e_ed0f_7e57);
    let mut files = Vec::new();
    for clip in ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"] {
        let src = std::fs::read(asset(&format!("samples/{clip}"))).unwrap();
        for kind in KINDS {
            for n in 0..14 {
                let path = dir.path().join(format!("{kind}-{n}-{clip}"));
                std::fs::write(&path, mutate(&src, kind, &mut rng)).unwrap();
                files.push(path);
            }
        }
    }

    // Two processes, each a share of the mutants, one ONNX Runtime thread each.
    let halves: Vec<Vec<PathBuf>> = files
        .chunks(files.len().div_ceil(2))
        .map(<[_]>::to_vec)
        .collect();
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = halves
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let sub = dir.path().join(format!("run{i}"));
                let mut init = vcw();
                init.args(["keys", "init", "--data-dir"])
                    .arg(sub.join("data"))
                    .arg("--keyring")
                    .arg(sub.join("keyring.toml"));
                assert!(init.status().unwrap().success());
                scope.spawn(move || scan(part, &sub, Duration::from_secs(900)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut verdicts = BTreeMap::<String, usize>::new();
    let mut errors = BTreeMap::<String, usize>::new();
    let mut peak = 0;
    for run in &runs {
        assert!(!run.timed_out, "a scan hung: {}", run.stderr);
        assert!(
            matches!(run.code, Some(0..=2)),
            "exit {:?} (a panic or a crash):\n{}",
            run.code,
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        peak = peak.max(run.peak_rss_kib);
        for doc in &run.docs {
            if let Some(v) = doc["verdict"].as_str() {
                *verdicts.entry(v.to_string()).or_default() += 1;
            } else {
                let error = doc["error"].as_str().unwrap_or_else(|| panic!("{doc}"));
                assert!(
                    !error.is_empty() && error.len() < 500,
                    "a clear error: {error}"
                );
                // Group by the message's shape: its words before the first number or colon.
                let kind: String = error
                    .split(": ")
                    .nth(1)
                    .unwrap_or(error)
                    .split(|c: char| c.is_ascii_digit() || c == ':' || c == '(')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                *errors.entry(kind).or_default() += 1;
            }
        }
    }
    let answered: usize = verdicts.values().sum::<usize>() + errors.values().sum::<usize>();
    eprintln!(
        "mutants: {}, verdicts: {verdicts:?}, errors: {errors:?}, peak RSS: {} MiB",
        files.len(),
        peak / 1024
    );
    assert_eq!(answered, files.len(), "one answer per mutant");
    assert!(peak < 2 * 1024 * 1024, "peak RSS {} MiB", peak / 1024);
}
