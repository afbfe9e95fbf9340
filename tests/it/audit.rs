//! The audit trail of a real service run: uploads, jobs, playback, revocation and erasure
//! leave records in one hash chain with signed checkpoints; `vcw audit verify` passes on
//! it, live and on an export checked offline with the public key, and names each kind of
//! tampering (edited, deleted, duplicated, reordered, truncated; a row edited in the database);
//! redaction keeps it verifiable, and pruning leaves a signed checkpoint as the anchor.

use std::path::Path;

use serde_json::Value;

use crate::serve::{Server, is_final, put_video, send, state, token, wait_for};
use crate::util::{asset, vcw};
use vcw::api::Role;

/// `vcw audit ARGS` against the service's data directory: exit code, stdout, stderr.
fn audit(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = vcw()
        .arg("audit")
        .args(args)
        .args(["--data-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Verifies `lines` written as an export file: exit code and the message.
fn verify_lines(dir: &Path, key: &Path, lines: &[String]) -> (i32, String) {
    let file = dir.join("tampered.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (code, out, err) = audit(
        dir,
        &[
            "verify",
            "--file",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    (code, format!("{out}{err}"))
}

#[test]
fn the_audit_trail_records_a_run_and_names_every_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let up = token(d, Role::Uploader);
    let reviewer = token(d, Role::Reviewer);
    let officer = token(d, Role::PrivacyOfficer);
    let s = Server::start(
        d,
        &[
            ("VCW__SERVER__REAPER_SECONDS", "0.2"),
            ("VCW__AUDIT__CHECKPOINT_SECONDS", "0.3"),
            ("RUST_LOG", "debug"),
        ],
    );
    let clip = asset("samples/bikes.mp4");
    let (a, b) = (
        "a0d170000000000000000000000000a1",
        "a0d170000000000000000000000000b2",
    );
    assert_eq!(put_video(&s, &up, a, &clip, &[]), 202);
    assert_eq!(put_video(&s, &up, b, &clip, &[]), 202);
    for id in [a, b] {
        assert_eq!(state(&wait_for(&s, &up, id, 120, is_final)), "done");
    }
    let playlist = s.url(&format!("/v1/videos/{a}/playlist.m3u8"));
    // A request id the client sends is echoed and stamped on the records it causes.
    let traced = [("x-request-id", "audit-test-playlist")];
    let (code, headers, _) = send("GET", &playlist, Some(&reviewer), &traced, b"");
    assert_eq!(code, 200);
    assert_eq!(headers["x-request-id"], "audit-test-playlist");
    let erase = s.url(&format!("/v1/videos/{b}"));
    assert_eq!(send("DELETE", &erase, Some(&officer), &[], b"").0, 200);
    let revoke = s.url("/v1/subjects/subject-1/consent");
    assert_eq!(send("DELETE", &revoke, Some(&officer), &[], b"").0, 200);
    let (code, out, err) = audit(d, &["checkpoint"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"seq\""), "{out}");

    // The live log verifies and holds every kind of record.
    let (code, out, err) = audit(d, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let verified: Value = serde_json::from_str(&out).unwrap();
    assert!(verified["records"].as_u64().unwrap() >= 10, "{verified}");
    let export = d.join("export.jsonl");
    let (code, _, err) = audit(d, &["export", "--out", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<String> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let actions: Vec<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["record"]["action"].as_str().map(str::to_string))
        .collect();
    for action in [
        "consent.grant",
        "video.queued",
        "job.done",
        "video.read.playlist",
        "video.erase_started",
        "video.erased",
        "consent.revoke",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }

    let record = |action: &str| {
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| v["record"].clone())
            .find(|r| r["action"] == action)
            .unwrap()
    };
    assert_eq!(
        record("video.read.playlist")["request_id"],
        "audit-test-playlist"
    );
    // One the client did not send is made up (32 hex digits); the worker's records have
    // none.
    let made_up = record("consent.revoke")["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(made_up.len() == 32 && made_up.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(record("job.done")["request_id"].is_null());

    // Offline, with the public key alone.
    let (code, key, err) = audit(d, &["key"]);
    assert_eq!(code, 0, "{err}");
    assert!(key.starts_with("-----BEGIN PUBLIC KEY-----"), "{key}");
    let key_file = d.join("audit.pub");
    std::fs::write(&key_file, &key).unwrap();
    let (code, message) = verify_lines(d, &key_file, &lines);
    assert_eq!(code, 0, "{message}");

    // Each kind of tampering, on the export.
    let records: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("{\"record\""))
        .collect();
    let seq_of = |i: usize| {
        serde_json::from_str::<Value>(&lines[i]).unwrap()["record"]["seq"]
            .as_i64()
            .unwrap()
    };
    let mid = records[records.len() / 2];
    let tampered = |f: &dyn Fn(&mut Vec<String>)| {
        let mut l = lines.clone();
        f(&mut l);
        verify_lines(d, &key_file, &l)
    };
    let edit = |l: &mut Vec<String>| {
        let mut v: Value = serde_json::from_str(&l[mid]).unwrap();
        v["record"]["result"] = Value::from("nothing happened");
        l[mid] = v.to_string();
    };
    let (code, message) = tampered(&edit);
    assert_eq!(code, 2);
    assert!(
        message.contains(&format!("record {} was edited", seq_of(mid))),
        "{message}"
    );
    let (code, message) = tampered(&|l| {
        l.remove(mid);
    });
    assert_eq!(code, 2);
    assert!(message.contains("deleted"), "{message}");
    let (code, message) = tampered(&|l| l.insert(mid, l[mid].clone()));
    assert_eq!(code, 2);
    assert!(message.contains("appears twice"), "{message}");
    // Two records trade places (their numbers swapped with them).
    let (code, message) = tampered(&|l| {
        let mut x: Value = serde_json::from_str(&l[mid]).unwrap();
        let mut y: Value = serde_json::from_str(&l[mid + 1]).unwrap();
        let (sx, sy) = (x["record"]["seq"].clone(), y["record"]["seq"].clone());
        x["record"]["seq"] = sy;
        y["record"]["seq"] = sx;
        l[mid] = y.to_string();
        l[mid + 1] = x.to_string();
    });
    assert_eq!(code, 2);
    assert!(message.contains("reordered"), "{message}");
    let last = *records.last().unwrap();
    let (code, message) = tampered(&|l| l.truncate(last - 1));
    assert_eq!(code, 2);
    assert!(message.contains("truncated"), "{message}");

    // The whole run at debug level: no subject and no consent token in any log line.
    drop(s);
    let log = std::fs::read_to_string(d.join("server.log")).unwrap();
    assert!(
        log.lines().count() > 100 && log.contains("DEBUG"),
        "a debug log"
    );
    let token = crate::serve::consent(d, "subject-1");
    let issuer_part = token.split('.').next().unwrap();
    for line in log.lines() {
        assert!(!line.contains("subject-1"), "a subject in the log: {line}");
        assert!(
            !line.contains(issuer_part),
            "a consent token in the log: {line}"
        );
    }

    // On the live catalog: a row changed in the database.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = d.join("catalog.sqlite");
    let python = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute(\"UPDATE audit_log SET result = result || ' (forged)' WHERE seq = 3\"); c.commit()",
        db.to_str().unwrap()
    );
    assert!(
        std::process::Command::new("python3")
            .args(["-c", &python])
            .status()
            .unwrap()
            .success()
    );
    let (code, _, err) = audit(d, &["verify"]);
    assert_eq!(code, 2);
    assert!(err.contains("record 3 was edited"), "{err}");
    let python = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute(\"UPDATE audit_log SET result = substr(result, 1, length(result) - 9) WHERE seq = 3\"); c.commit()",
        db.to_str().unwrap()
    );
    assert!(
        std::process::Command::new("python3")
            .args(["-c", &python])
            .status()
            .unwrap()
            .success()
    );

    // Redaction keeps it verifiable; pruning leaves the last checkpoint as the anchor.
    rt.block_on(async {
        let catalog = vcw::catalog::Catalog::open(d).await.unwrap();
        let now = vcw::domain::clock::now_ms();
        assert!(catalog.redact_audit(now + 1).await.unwrap() > 0);
        let signer = vcw::audit::AuditSigner::open(&d.join("audit-signing.pem"), false).unwrap();
        let verified = vcw::audit::verify_catalog(&catalog, &signer.verifying_key())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(verified.redacted, verified.records, "{verified:?}");
        let anchor = catalog
            .audit_checkpoints()
            .await
            .unwrap()
            .last()
            .unwrap()
            .seq;
        assert!(catalog.prune_audit(now + 1).await.unwrap() > 0);
        let verified = vcw::audit::verify_catalog(&catalog, &signer.verifying_key())
            .await
            .unwrap();
        assert_eq!(
            verified.map(|v| v.first),
            Ok(None),
            "pruned up to the anchor at {anchor}"
        );
    });
    let (code, out, err) = audit(d, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
}
