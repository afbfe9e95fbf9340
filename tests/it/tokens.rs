//! API tokens: they carry a public id, expire, can be listed and revoked (refused from
//! the next request on), and a spray of made-up tokens is held back before it costs the
//! catalog, without locking out tokens that work.

use serde_json::Value;

use crate::serve::{Server, send, token};
use crate::util::vcw;
use vcw::api::Role;

fn tokens_cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = vcw()
        .arg("token")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tokens_are_listed_revoked_and_sprays_are_held_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reviewer = token(d, Role::Reviewer);
    let (ok, service, _) = tokens_cli(
        d,
        &[
            "create", "--role", "uploader", "--label", "ci robot", "--days", "0",
        ],
    );
    assert!(ok);
    let service = service.trim().to_string();
    let id = |t: &str| t["vcw_".len().."vcw_".len() + 16].to_string();
    assert!(
        service.starts_with(&format!("vcw_{}_", id(&service))),
        "{service}"
    );

    let (ok, listed, _) = tokens_cli(d, &["list", "--json"]);
    assert!(ok);
    let rows: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let robot = rows
        .iter()
        .find(|r| r["id"] == id(&service).as_str())
        .unwrap();
    assert_eq!(robot["role"], "uploader");
    assert_eq!(robot["label"], "ci robot");
    assert_eq!(robot["state"], "active");
    assert!(robot["expires_at_ms"].is_null(), "--days 0: never");
    let mine = rows
        .iter()
        .find(|r| r["id"] == id(&reviewer).as_str())
        .unwrap();
    let lifetime =
        mine["expires_at_ms"].as_i64().unwrap() - mine["created_at_ms"].as_i64().unwrap();
    // To the day: the expiry is computed a moment before the row's creation time.
    let days = (lifetime as f64 / 86_400_000.0).round();
    assert_eq!(days, 90.0, "tokens expire after 90 days by default");
    let (_, table, _) = tokens_cli(d, &["list"]);
    assert!(
        table.contains("ci robot") && table.contains("never"),
        "{table}"
    );
    assert!(
        !table.contains(&service),
        "the token itself is never shown again"
    );

    let s = Server::start(d, &[("VCW__SERVER__AUTH_FAILURES_PER_SECOND", "1")]);
    let me = s.url("/v1/whoami");
    let (status, _, body) = send("GET", &me, Some(&service), &[], b"");
    assert_eq!(status, 200);
    let who: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        who["id"],
        id(&service).as_str(),
        "the caller is the token's public id"
    );

    // Revoked on a running server: refused from the next request on.
    let (ok, _, said) = tokens_cli(d, &["revoke", &id(&service)]);
    assert!(ok, "{said}");
    assert_eq!(send("GET", &me, Some(&service), &[], b"").0, 401);
    let (ok, _, said) = tokens_cli(d, &["revoke", &id(&service)]);
    assert!(!ok && said.contains("no active token"), "{said}");
    let (_, listed, _) = tokens_cli(d, &["list", "--json"]);
    assert!(
        listed.lines().any(|l| l.contains("\"revoked\"")),
        "{listed}"
    );

    // A spray of made-up tokens: held back (429) once failures pile up (1 a second here,
    // a burst of 10), while a token that works keeps working.
    assert_eq!(send("GET", &me, Some(&reviewer), &[], b"").0, 200);
    let mut held_back = 0;
    for n in 0..400 {
        let fake = format!("vcw_{n:016x}_not-a-secret");
        match send("GET", &me, Some(&fake), &[], b"").0 {
            401 => {}
            429 => held_back += 1,
            other => panic!("made-up token answered {other}"),
        }
    }
    assert!(held_back > 100, "{held_back} of 400 held back");
    assert_eq!(send("GET", &me, Some(&reviewer), &[], b"").0, 200);
}
