//! `vcw keys`, `vcw seal`, `vcw open` end to end through the real binary: round trips,
//! ranges, tampering, rotation, crypto-shredding and keyring hygiene.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{asset, vcw};

/// A data dir + keyring in a temp dir, and a way to run vcw against them.
struct Vault {
    dir: tempfile::TempDir,
}

impl Vault {
    fn new() -> Self {
        let v = Vault {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = v.run(&["keys", "init"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        v
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        vcw()
            .args(args)
            .arg("--data-dir")
            .arg(self.path("data"))
            .arg("--keyring")
            .arg(self.path("keyring.toml"))
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "vcw {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(2), "vcw {args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    fn seal(&self, input: &Path, name: &str, subject: &str) -> (PathBuf, String) {
        let out = self.path(name);
        let o = self.run(&[
            "seal",
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            "--subject",
            subject,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr);
        let id = err
            .split("object ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        (out, id)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn seal_open_and_range_round_trip() {
    let v = Vault::new();
    let src = asset("samples/bikes.mp4");
    let plain = std::fs::read(&src).unwrap();
    let (sealed, _) = v.seal(&src, "bikes.sealed", "alice@example.com");
    let sealed_bytes = std::fs::read(&sealed).unwrap();
    assert!(
        !sealed_bytes.windows(64).any(|w| w == &plain[1000..1064]),
        "no plaintext in the sealed file"
    );
    assert_eq!(
        std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = v.path("out.mp4");
    v.ok(&["open", s(&sealed), s(&out)]);
    assert_eq!(std::fs::read(&out).unwrap(), plain);
    for (a, b) in [
        (0u64, 0u64),
        (65_530, 65_545),
        (100_000, 299_999),
        (plain.len() as u64 - 10, plain.len() as u64 - 1),
    ] {
        let part = v.path("part.bin");
        v.ok(&["open", s(&sealed), s(&part), "--range", &format!("{a}-{b}")]);
        assert_eq!(
            std::fs::read(&part).unwrap(),
            &plain[a as usize..=b as usize],
            "range {a}-{b}"
        );
    }
    let err = v.fails(&[
        "open",
        s(&sealed),
        s(&v.path("x")),
        "--range",
        &format!("0-{}", plain.len()),
    ]);
    assert!(err.contains("out of bounds"), "{err}");
    // Through pipes: stdin to stdout.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} open - - --data-dir {} --keyring {} < {}",
            env!("CARGO_BIN_EXE_vcw"),
            s(&v.path("data")),
            s(&v.path("keyring.toml")),
            s(&sealed)
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, plain);
}

#[test]
fn tampering_is_refused_and_releases_no_output_file() {
    let v = Vault::new();
    let src = asset("samples/carphone_pristine.mp4");
    let (sealed, _) = v.seal(&src, "c.sealed", "bob");
    let good = std::fs::read(&sealed).unwrap();
    let flip = |i: usize, mask: u8| {
        let mut b = good.clone();
        b[i] ^= mask;
        b
    };
    let mut extended = good.clone();
    extended.extend_from_slice(&[0; 32]);
    let n = good.len();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("header bit", flip(66, 1), "header authentication failed"),
        ("object id bit", flip(20, 1), "header is damaged"),
        ("chunk bit", flip(300_000, 0x80), "authentication failed"),
        ("tag bit", flip(n - 1, 1), "authentication failed"),
        (
            "cut inside a chunk",
            good[..n - 100].to_vec(),
            "authentication failed",
        ),
        (
            "cut at a chunk boundary",
            good[..112 + 2 * (65_536 + 16)].to_vec(),
            "truncated",
        ),
        ("extended", extended, "chunk"),
    ];
    for (name, bytes, needle) in cases {
        let bad = v.path("bad.sealed");
        std::fs::write(&bad, bytes).unwrap();
        let out = v.path("bad.out");
        let err = v.fails(&["open", s(&bad), s(&out)]);
        assert!(err.contains(needle), "{name}: {err}");
        assert!(!out.exists(), "{name}: no output file left behind");
        assert!(
            std::fs::read_dir(v.dir.path()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("partial"))
        );
    }
    let err = v.fails(&["open", s(&src), s(&v.path("y"))]);
    assert!(err.contains("not a sealed object"), "{err}");
}

#[test]
fn another_catalog_cannot_open_and_an_older_copy_is_refused() {
    let v = Vault::new();
    let src = asset("samples/carphone_pristine.mp4");
    let (sealed, _) = v.seal(&src, "a.sealed", "carol");
    let other = Vault::new();
    let err = other.fails(&["open", s(&sealed), s(&other.path("o"))]);
    assert!(err.contains("not in the catalog"), "{err}");
}

#[test]
fn rotation_rewraps_without_touching_content() {
    let v = Vault::new();
    let src = asset("samples/carphone_pristine.mp4");
    let (sealed, _) = v.seal(&src, "r.sealed", "dave");
    let before = std::fs::read(&sealed).unwrap();
    let out = v.ok(&["keys", "rotate"]);
    assert!(
        out.contains("KEK version 2") && out.contains("1 subject key"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&sealed).unwrap(),
        before,
        "content not re-encrypted"
    );
    v.ok(&["open", s(&sealed), s(&v.path("o"))]);
    // New objects after rotation use the new KEK version and still open.
    let (s2, _) = v.seal(&src, "r2.sealed", "erin");
    v.ok(&["open", s(&s2), s(&v.path("o2"))]);
}

/// A copy of the data directory: what a backup of the catalog holds.
fn backup(v: &Vault, name: &str) {
    let to = v.path(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(v.path("data")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// The gap a shred leaves in backups, and how KEK retirement closes it: a catalog backup
/// from before the shred still holds the wrapped subject key, and with the KEK it opens
/// the "shredded" object; once the KEK version is rotated out and retired, it no longer
/// does. A version still wrapping a live key is never retired.
#[test]
fn retiring_a_kek_closes_the_backup_gap_of_a_shred() {
    let v = Vault::new();
    let src = asset("samples/carphone_pristine.mp4");
    let (frank, _) = v.seal(&src, "f.sealed", "frank");
    let (grace, _) = v.seal(&src, "g.sealed", "grace");
    backup(&v, "backup");
    v.ok(&["keys", "shred", "--subject", "frank"]);
    assert!(
        v.fails(&["open", s(&frank), s(&v.path("o"))])
            .contains("shredded")
    );
    let from_backup = |sealed: &Path| {
        vcw()
            .args(["open", s(sealed), s(&v.path("o"))])
            .arg("--data-dir")
            .arg(v.path("backup"))
            .arg("--keyring")
            .arg(v.path("keyring.toml"))
            .output()
            .unwrap()
    };
    let gap = from_backup(&frank);
    assert!(
        gap.status.success(),
        "the backup still opens the shredded object"
    );

    // Nothing to retire yet: v1 is current; then v1 wraps a key made by a process that
    // still had the old keyring.
    let report: serde_json::Value =
        serde_json::from_str(&v.ok(&["keys", "retire", "--backup-retention-days", "0"])).unwrap();
    assert_eq!(report["retired"], serde_json::json!([]), "{report}");
    assert_eq!(report["kept"][0]["reason"], "current", "{report}");
    std::fs::copy(v.path("keyring.toml"), v.path("old-keyring.toml")).unwrap();
    v.ok(&["keys", "rotate"]);
    let late = vcw()
        .args([
            "seal",
            s(&src),
            s(&v.path("h.sealed")),
            "--subject",
            "heidi",
        ])
        .arg("--data-dir")
        .arg(v.path("data"))
        .arg("--keyring")
        .arg(v.path("old-keyring.toml"))
        .output()
        .unwrap();
    assert!(late.status.success());
    let report = v.ok(&["keys", "retire", "--backup-retention-days", "0"]);
    assert!(
        report.contains("1 live subject key(s) still wrapped"),
        "{report}"
    );
    // Within the backup retention nothing is retired either.
    v.ok(&["keys", "rotate"]);
    let report = v.ok(&["keys", "retire"]);
    assert!(
        report.contains("\"retired\":[]") && report.contains("superseded 0 day(s) ago"),
        "{report}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&v.ok(&["keys", "retire", "--backup-retention-days", "0"])).unwrap();
    assert_eq!(report["retired"], serde_json::json!([1, 2]), "{report}");
    let closed = from_backup(&frank);
    assert_eq!(closed.status.code(), Some(2));
    let err = String::from_utf8_lossy(&closed.stderr);
    assert!(err.contains("KEK version 1 is not in the keyring"), "{err}");
    // Live data is untouched.
    v.ok(&["open", s(&grace), s(&v.path("o"))]);
    v.ok(&["open", s(&v.path("h.sealed")), s(&v.path("o"))]);
}

#[test]
fn shredding_a_subject_or_an_object_makes_them_unopenable() {
    let v = Vault::new();
    let src = asset("samples/carphone_pristine.mp4");
    let (a1, _) = v.seal(&src, "a1.sealed", "frank");
    let (a2, _) = v.seal(&src, "a2.sealed", "frank");
    let (b1, b1_id) = v.seal(&src, "b1.sealed", "grace");
    let (b2, _) = v.seal(&src, "b2.sealed", "grace");

    let report = v.ok(&["keys", "shred", "--subject", "frank"]);
    assert!(
        report.contains("\"subject_key_destroyed\":true"),
        "{report}"
    );
    for f in [&a1, &a2] {
        let err = v.fails(&["open", s(f), s(&v.path("o"))]);
        assert!(err.contains("shredded"), "{err}");
    }
    v.ok(&["open", s(&b1), s(&v.path("o"))]);

    v.ok(&["keys", "shred", "--object", &b1_id]);
    let err = v.fails(&["open", s(&b1), s(&v.path("o"))]);
    assert!(err.contains("shredded"), "{err}");
    v.ok(&["open", s(&b2), s(&v.path("o"))]);

    // The subject can upload again: a new key, and the old objects stay dead.
    let (a3, _) = v.seal(&src, "a3.sealed", "frank");
    v.ok(&["open", s(&a3), s(&v.path("o"))]);
    assert!(
        v.fails(&["open", s(&a1), s(&v.path("o"))])
            .contains("shredded")
    );
    // The raw subject identifier is nowhere in the catalog.
    let db = std::fs::read(v.path("data/catalog.sqlite")).unwrap();
    assert!(!db.windows(5).any(|w| w == b"frank"));
}

#[test]
fn keyring_hygiene() {
    let v = Vault::new();
    let err = v.fails(&["keys", "init"]);
    assert!(err.contains("refusing to overwrite"), "{err}");
    let keyring = v.path("keyring.toml");
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o640)).unwrap();
    let src = asset("samples/carphone_pristine.mp4");
    let err = v.fails(&["seal", s(&src), s(&v.path("x.sealed")), "--subject", "h"]);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!v.path("x.sealed").exists());
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Key material never reaches the terminal.
    let text = std::fs::read_to_string(&keyring).unwrap();
    let kek = text
        .split("key = \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let out = v.run(&["seal", s(&src), s(&v.path("x.sealed")), "--subject", "h"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(&kek));
    let missing = vcw()
        .args([
            "seal",
            s(&src),
            "-",
            "--subject",
            "h",
            "--keyring",
            "/nonexistent/k.toml",
            "--data-dir",
        ])
        .arg(v.path("data"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("vcw keys init"));
}
