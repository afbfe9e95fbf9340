//! The job path under concurrency and crashes, through a real `vcw serve`:
//! - many parallel first uploads for fresh subjects, parallel PUTs with one id, parallel
//!   tus PATCHes at one offset: every accepted video ends `done` and playable, and the
//!   losers get 409, never a 500;
//! - a crash matrix: the process aborts (`VCW_CRASH_AT`, as abrupt as kill -9) at each
//!   step boundary, is restarted, and the reaper runs. Every accepted upload reaches one
//!   terminal state, every stored object is the done attempt's or swept, every webhook
//!   is delivered with its event id, and no plaintext byte of the video is on disk.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::{
    Server, consent, get_json, is_final, send, state, stored_files, token_with, try_send, wait_for,
    webhook_receiver,
};
use crate::util::ffmpeg;
use vcw::api::Role;

/// Reaper settings that make crash recovery quick in tests. A lease long enough that a loaded 2-core machine (the whole suite runs in parallel)
/// renews it in time, short enough that the reaper soon requeues a crashed attempt.
const FAST_REAPER: [(&str, &str); 5] = [
    ("VCW__SERVER__LEASE_SECONDS", "6"),
    ("VCW__SERVER__REAPER_SECONDS", "0.2"),
    ("VCW__SERVER__ORPHAN_SWEEP_SECONDS", "0.2"),
    ("VCW__SERVER__ORPHAN_GRACE_SECONDS", "0"),
    ("VCW__SERVER__UPLOAD_EXPIRY_SECONDS", "1"),
];

/// A 2-second 128x96 H.264 clip: cheap to scan many times.
fn tiny_clip(dir: &Path) -> std::path::PathBuf {
    clip(dir, "tiny.mp4", 2)
}

/// A `seconds`-long 128x96 H.264 clip with a keyframe every second.
fn clip(dir: &Path, name: &str, seconds: u32) -> std::path::PathBuf {
    let out = dir.join(name);
    let seconds = seconds.to_string();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=128x96:rate=10",
        "-t",
        &seconds,
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "10",
        out.to_str().unwrap(),
    ]);
    out
}

fn put(s: &Server, tok: &str, id: &str, subject: &str, body: &[u8]) -> u16 {
    send(
        "PUT",
        &s.url(&format!("/v1/videos/{id}")),
        Some(tok),
        &[("vcw-consent", &consent(&s.dir, subject))],
        body,
    )
    .0
}

/// The playlist and every segment it names are served (200) to a reviewer (`tok`).
fn playable(s: &Server, tok: &str, id: &str) -> bool {
    let (status, _, body) = send(
        "GET",
        &s.url(&format!("/v1/videos/{id}/playlist.m3u8")),
        Some(tok),
        &[],
        b"",
    );
    if status != 200 {
        return false;
    }
    let text = String::from_utf8(body).unwrap_or_default();
    let segments: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("segments/"))
        .collect();
    !segments.is_empty()
        && segments.iter().all(|seg| {
            let url = s.url(&format!("/v1/videos/{id}/{seg}"));
            send("GET", &url, Some(tok), &[], b"").0 == 200
        })
}

fn hex_id(n: usize) -> String {
    format!("{n:032x}")
}

#[test]
fn concurrency_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    concurrency(dir.path(), &[]);
}

#[test]
fn concurrency_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let pg = crate::cluster::Postgres::start(dir.path());
    concurrency(dir.path(), &[("VCW__CLUSTER__DATABASE_URL", &pg.url)]);
}

/// One server (with the catalog `env` selects) takes every race at once.
fn concurrency(dir: &Path, env: &[(&str, &str)]) {
    let mut env = env.to_vec();
    env.push(("VCW__SERVER__WORKERS", "3"));
    let up = token_with(dir, Role::Uploader, &env);
    let officer = token_with(dir, Role::PrivacyOfficer, &env);
    let reviewer = token_with(dir, Role::Reviewer, &env);
    let s = Server::start(dir, &env);
    erase_and_cancel_while_running(&s, &up, &officer, &reviewer);
    concurrent_uploads_lose_nothing(&s, &up, &reviewer);
}

/// Concurrent first uploads of fresh subjects, PUTs with one id, and tus PATCHes at one
/// offset: every accepted video ends done and playable.
fn concurrent_uploads_lose_nothing(s: &Server, up: &str, reviewer: &str) {
    let clip = std::fs::read(tiny_clip(&s.dir)).unwrap();

    // 10 fresh subjects, two first uploads each, all at once.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|n| {
                let clip = &clip;
                scope.spawn(move || {
                    put(
                        s,
                        up,
                        &hex_id(0xa000 + n),
                        &format!("fresh-{}", n / 2),
                        clip,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");

    // Six PUTs with one id: one 202, the rest 409.
    let same = hex_id(0xb000);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (clip, same) = (&clip, &same);
                scope.spawn(move || put(s, up, same, "same-id", clip))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );

    // Six tus PATCHes at offset 0 of one upload: one 204, the rest 409.
    let length = clip.len().to_string();
    let (status, headers, _) = send(
        "POST",
        &s.url("/v1/uploads"),
        Some(up),
        &[
            ("tus-resumable", "1.0.0"),
            ("upload-length", &length),
            ("vcw-consent", &consent(&s.dir, "tus-race")),
        ],
        b"",
    );
    assert_eq!(status, 201);
    let location = headers["location"].to_str().unwrap().to_string();
    let tus_id = location.rsplit('/').next().unwrap().to_string();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (clip, location) = (&clip, &location);
                scope.spawn(move || {
                    send(
                        "PATCH",
                        &s.url(location),
                        Some(up),
                        &[
                            ("tus-resumable", "1.0.0"),
                            ("upload-offset", "0"),
                            ("content-type", "application/offset+octet-stream"),
                        ],
                        clip,
                    )
                    .0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );

    // Every accepted video ends done and playable.
    let mut accepted: Vec<String> = (0..20).map(|n| hex_id(0xa000 + n)).collect();
    accepted.push(same);
    accepted.push(tus_id);
    let mut done = 0;
    let mut play = 0;
    for id in &accepted {
        let v = wait_for(s, up, id, 300, is_final);
        if state(&v) == "done" {
            done += 1;
        }
        if playable(s, reviewer, id) {
            play += 1;
        }
    }
    println!(
        "concurrency: {} accepted, {done} done, {play} playable",
        accepted.len()
    );
    assert_eq!((done, play), (accepted.len(), accepted.len()));
    // Only the done attempts' objects are stored; no staged part is left.
    wait_until(30, || stored_files(&s.dir, "staging").is_empty());
}

/// Erasures (two at once), a cancel, and a cancel racing an erasure, all while the jobs
/// run: the erased videos are gone (410, nothing stored), the cancelled one ends
/// `cancelled` with nothing stored, and no staged upload is left.
fn erase_and_cancel_while_running(s: &Server, up: &str, officer: &str, reviewer: &str) {
    let body = std::fs::read(clip(&s.dir, "long.mp4", 120)).unwrap();
    let [erased, cancelled, both] = [0xe001, 0xe002, 0xe003].map(hex_id);
    for id in [&erased, &cancelled, &both] {
        assert_eq!(put(s, up, id, "busy-subject", &body), 202);
    }
    for id in [&erased, &cancelled, &both] {
        wait_for(s, up, id, 120, |v| state(v) == "running");
    }
    let video = |id: &str| s.url(&format!("/v1/videos/{id}"));
    let cancel = |id: &str| send("POST", &format!("{}/cancel", video(id)), Some(up), &[], b"");
    let erase = |id: &str| send("DELETE", &video(id), Some(officer), &[], b"");
    let answers: Vec<u16> = std::thread::scope(|scope| {
        let calls = [
            scope.spawn(|| erase(&erased).0),
            scope.spawn(|| erase(&erased).0),
            scope.spawn(|| cancel(&cancelled).0),
            scope.spawn(|| cancel(&both).0),
            scope.spawn(|| erase(&both).0),
        ];
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(answers, [200, 200, 202, 202, 200]);

    let v = wait_for(s, up, &cancelled, 120, is_final);
    assert_eq!(state(&v), "cancelled", "{v}");
    for id in [&erased, &both] {
        let (_, v) = get_json(&video(id), officer);
        assert_eq!(v["erased"], true, "{v}");
        let playlist = format!("{}/playlist.m3u8", video(id));
        assert_eq!(send("GET", &playlist, Some(reviewer), &[], b"").0, 410);
    }
    // Nothing any attempt sealed survives, not even what it sealed after the erasure
    // began; the staged uploads are shredded.
    for id in [&erased, &cancelled, &both] {
        wait_until(60, || {
            stored_files(&s.dir, &format!("videos/{id}")).is_empty()
        });
    }
    wait_until(60, || stored_files(&s.dir, "staging").is_empty());
}

fn wait_until(secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "condition not reached in {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// No file under `dir` contains `needle` (a run of the source video's bytes).
fn no_plaintext(dir: &Path, needle: &[u8]) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "plaintext of the video in {}",
                    p.display()
                );
            }
        }
    }
}

/// One crash point: start with `VCW_CRASH_AT=point`, act, see the process die, restart
/// it plain, and check the invariants.
fn crash_at(point: &str, postgres: bool, clip: &[u8], needle: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let pg = postgres.then(|| crate::cluster::Postgres::start(dir.path()));
    let catalog: Vec<(&str, &str)> = pg
        .iter()
        .map(|pg| ("VCW__CLUSTER__DATABASE_URL", pg.url.as_str()))
        .collect();
    let catalog = catalog.as_slice();
    let up = token_with(dir.path(), Role::Uploader, catalog);
    let officer = token_with(dir.path(), Role::PrivacyOfficer, catalog);
    let reviewer = token_with(dir.path(), Role::Reviewer, catalog);
    let (hook_url, hooks) = webhook_receiver();
    let id = hex_id(0xc000);
    let mut env: Vec<(&str, &str)> = FAST_REAPER.to_vec();
    env.extend_from_slice(catalog);
    let plain = env.clone();
    env.push(("VCW_CRASH_AT", point));
    let mut s = Server::start(dir.path(), &env);
    let url = s.url(&format!("/v1/videos/{id}"));
    let crash_consent = consent(&s.dir, "crash-subject");
    let headers = [
        ("vcw-consent", crash_consent.as_str()),
        ("vcw-callback-url", hook_url.as_str()),
    ];
    let answer = try_send("PUT", &url, Some(&up), &headers, clip);
    if point == "during-erase" {
        assert_eq!(answer.as_ref().unwrap().0, 202);
        wait_for(&s, &up, &id, 120, is_final);
        assert!(try_send("DELETE", &url, Some(&officer), &[], b"").is_err());
    }
    let subject = s.url("/v1/subjects/crash-subject");
    if point == "during-subject-erasure" {
        assert_eq!(answer.as_ref().unwrap().0, 202);
        wait_for(&s, &up, &id, 120, is_final);
        assert!(try_send("DELETE", &subject, Some(&officer), &[], b"").is_err());
    }
    let status = s.wait_exit(120).unwrap_or_else(|| {
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        let answer = answer
            .as_ref()
            .map(|(c, _, b)| (c, String::from_utf8_lossy(b)));
        panic!("{point}: the crash point was never reached; PUT: {answer:?}; log:\n{log}")
    });
    assert!(
        !status.success(),
        "{point}: the crash point aborts the process"
    );
    drop(s);

    let s = Server::start(dir.path(), &plain);
    let url = s.url(&format!("/v1/videos/{id}"));
    match point {
        "after-stage-part" => {
            // The client never heard back: nothing was accepted, and the staged part of the
            // upload that never got its row goes (the upload expires, the sweep runs).
            wait_until(60, || stored_files(&s.dir, "").is_empty());
            let (code, _) = get_json(&url, &up);
            assert_eq!(code, 404, "no video was recorded");
        }
        "during-subject-erasure" => {
            // The reaper finishes the subject's erasure and signs its receipt: the key is
            // shredded, nothing is stored, the video is Gone.
            let subject = s.url("/v1/subjects/crash-subject");
            let mut receipt = Value::Null;
            wait_until(60, || {
                let (_, _, body) = send("GET", &subject, Some(&officer), &[], b"");
                let held: Value = serde_json::from_slice(&body).unwrap();
                receipt = held["erasure_receipt"].clone();
                !receipt.is_null()
            });
            let erasure = &receipt["body"]["erasure"];
            assert_eq!(erasure["subject_key_shredded"], true, "{receipt}");
            assert_eq!(erasure["videos"][0], id.as_str(), "{receipt}");
            assert!(stored_files(&s.dir, "").is_empty());
            let playlist = format!("{url}/playlist.m3u8");
            assert_eq!(send("GET", &playlist, Some(&reviewer), &[], b"").0, 410);
        }
        "during-erase" => {
            // The reaper finishes the erasure: nothing of the video is left, and it is Gone.
            wait_until(60, || stored_files(&s.dir, "").is_empty());
            let playlist = format!("{url}/playlist.m3u8");
            assert_eq!(send("GET", &playlist, Some(&reviewer), &[], b"").0, 410);
            let (_, v) = get_json(&url, &up);
            assert_eq!(v["erased"], true, "{v}");
        }
        _ => {
            // The job was recorded before the crash: it ends done exactly once.
            let v = wait_for(&s, &up, &id, 180, is_final);
            assert_eq!(state(&v), "done", "{point}: {v}");
            assert!(playable(&s, &reviewer, &id), "{point}: playable");
            // Exactly the done attempt's objects remain: segments + playlist + manifest
            // (a write the crash interrupted left a temp file, which the sweep removes).
            let attempt = v["attempts"].as_i64().unwrap();
            wait_until(60, || {
                let stored = stored_files(&s.dir, "");
                stored
                    .iter()
                    .all(|k| k.starts_with(&format!("videos/{id}/a{attempt}/")))
            });
            // The webhook arrives with its event id (at least once, always the same id).
            wait_until(60, || {
                hooks.lock().unwrap().iter().any(|(h, _)| {
                    h.get("vcw-delivery").map(String::as_str) == Some(&format!("{id}-done"))
                })
            });
            let hooks = hooks.lock().unwrap();
            for (h, body) in hooks.iter() {
                let event: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(
                    event["event_id"].as_str(),
                    h.get("vcw-delivery").map(String::as_str)
                );
            }
        }
    }
    no_plaintext(dir.path(), needle);
}

#[test]
fn crash_matrix_on_sqlite() {
    crash_matrix(false);
}

#[test]
fn crash_matrix_on_postgresql() {
    crash_matrix(true);
}

/// Every crash point, each with a fresh data directory (and database).
fn crash_matrix(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let clip = std::fs::read(tiny_clip(dir.path())).unwrap();
    // A run of encoded video data (past the container header) to look for on disk.
    let needle = clip[clip.len() / 2..clip.len() / 2 + 48].to_vec();
    for point in [
        "after-stage-part",
        "before-publish",
        "after-publish",
        "during-store-write",
        "before-complete",
        "after-complete",
        "during-erase",
        "during-subject-erasure",
    ] {
        crash_at(point, postgres, &clip, &needle);
    }
}
