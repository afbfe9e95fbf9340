//! The dashboard end to end: a real `vcw serve`, Debian's Chromium driven by playwright-core
//! (tests/browser/dashboard.cjs: sign in, upload, watch the job, review, unblur, approve),
//! then the API and the audit trail checked for what the browser did. Screenshots are
//! kept in target/browser-artifacts. Also: the session cookie's CSRF rule without a
//! browser, and the embedded assets' headers.

use std::process::Command;

use serde_json::{Value, json};

use crate::serve::{Server, consent, send, token};
use crate::util::{asset, repo};
use vcw::api::Role;

#[test]
fn a_reviewer_signs_in_watches_an_upload_and_approves_it_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reviewer = token(d, Role::Reviewer);
    let uploader = token(d, Role::Uploader);
    let officer = token(d, Role::PrivacyOfficer);
    let s = Server::start(d, &[]);
    let shots = repo().join("target/browser-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    // Big Buck Bunny: NudeNet fires on the cartoon, open_nsfw does not: `review`.
    let id = "da5b0a4d000000000000000000000001";
    let more = format!(
        "da5b0a4d000000000000000000000002={},da5b0a4d000000000000000000000003={}",
        asset("samples/bikes.mp4").display(),
        asset("samples/carphone_pristine.mp4").display()
    );
    let out = Command::new("node")
        .arg(repo().join("tests/browser/dashboard.cjs"))
        .env("VCW_URL", s.url(""))
        .env("VCW_TOKEN", &reviewer)
        .env("VCW_UPLOAD_TOKEN", &uploader)
        .env("VCW_CONSENT", consent(d, "subject-1"))
        .env("VCW_SAMPLE", asset("samples/bigbuckbunny.mp4"))
        .env("VCW_VIDEO_ID", id)
        .env("VCW_MORE", more)
        .env("VCW_SHOTS", &shots)
        .env("VCW_CHROMIUM", "/usr/bin/chromium")
        .output()
        .expect("node runs (make setup installs it with Chromium and playwright-core)");
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{log}\nserver log:\n{}",
        std::fs::read_to_string(d.join("server.log")).unwrap_or_default()
    );
    for step in ["approved", "one frame unblurred", "the player loaded"] {
        assert!(log.contains(step), "{step}: {log}");
    }

    // What the browser did, as the API and the audit trail saw it.
    let (_, _, body) = send(
        "GET",
        &s.url(&format!("/v1/videos/{id}")),
        Some(&reviewer),
        &[],
        b"",
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["verdict"], "allow", "approve sets allow: {v}");
    let (status, _, body) = send(
        "GET",
        &s.url("/v1/subjects/subject-1"),
        Some(&officer),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    let held: Value = serde_json::from_slice(&body).unwrap();
    let actions: Vec<&str> = held["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for action in [
        "video.read.evidence",
        "video.read.evidence.unblurred",
        "video.read.segment",
        "video.reviewed",
    ] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
    let unblurred = actions
        .iter()
        .filter(|a| **a == "video.read.evidence.unblurred")
        .count();
    assert_eq!(unblurred, 1, "exactly the one deliberate unblur");
    for name in [
        "01-login",
        "02-jobs",
        "03-overview",
        "04-review",
        "05-approved",
    ] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}.png");
    }
}

#[test]
fn sessions_need_the_csrf_header_for_changes_and_assets_are_locked_down() {
    let dir = tempfile::tempdir().unwrap();
    let admin = token(dir.path(), Role::Admin);
    let s = Server::start(dir.path(), &[]);

    let json_body = [("content-type", "application/json")];
    let login = |t: &str| {
        let body = json!({ "token": t }).to_string();
        send(
            "POST",
            &s.url("/dashboard/login"),
            None,
            &json_body,
            body.as_bytes(),
        )
    };
    assert_eq!(login("vcw_unknown").0, 401);
    let (status, headers, body) = login(&admin);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let who: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(who["role"], "admin");
    let cookies: Vec<&str> = (headers.get_all("set-cookie").iter())
        .map(|c| c.to_str().unwrap())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("vcw_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let csrf_cookie = cookies.iter().find(|c| c.starts_with("vcw_csrf=")).unwrap();
    assert!(
        !csrf_cookie.contains("HttpOnly"),
        "the page reads it: {csrf_cookie}"
    );
    let csrf = csrf_cookie["vcw_csrf=".len()..].split(';').next().unwrap();
    let cookie = format!("vcw_session={admin}");

    // Reads with the cookie alone.
    let (status, _, body) = send(
        "GET",
        &s.url("/v1/dashboard"),
        None,
        &[("cookie", &cookie)],
        b"",
    );
    assert_eq!(status, 200);
    let overview: Value = serde_json::from_slice(&body).unwrap();
    for key in [
        "jobs",
        "outbox",
        "throughput",
        "verdicts",
        "latency_ms",
        "workers",
        "cache",
        "consent_events",
        "integrity_failures",
    ] {
        assert!(overview.get(key).is_some(), "{key}: {overview}");
    }
    // A change with the cookie but without the header (what a forged cross-site request
    // would be) is refused, and changes nothing; with it, it goes through.
    let retry = s.url("/v1/videos/0123456789abcdef0123456789abcdef/retry");
    let (status, _, body) = send("POST", &retry, None, &[("cookie", &cookie)], b"");
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("X-Vcw-Csrf"));
    let wrong = [("cookie", cookie.as_str()), ("x-vcw-csrf", "00")];
    assert_eq!(send("POST", &retry, None, &wrong, b"").0, 403);
    let right = [("cookie", cookie.as_str()), ("x-vcw-csrf", csrf)];
    assert_eq!(
        send("POST", &retry, None, &right, b"").0,
        404,
        "past CSRF: no such video"
    );
    // A bearer token needs no CSRF header (no browser sends it on its own).
    assert_eq!(send("POST", &retry, Some(&admin), &[], b"").0, 404);
    // Login takes JSON only: a cross-site form cannot post it.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let body = format!("token={admin}");
    assert_eq!(
        send(
            "POST",
            &s.url("/dashboard/login"),
            None,
            &form,
            body.as_bytes()
        )
        .0,
        415
    );

    // The page and its files: embedded, never framed, only their own scripts.
    for (path, kind) in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
        ("/dashboard/hls.js", "text/javascript"),
    ] {
        let (status, headers, body) = send("GET", &s.url(path), None, &[], b"");
        assert_eq!(status, 200, "{path}");
        let header = |name: &str| headers[name].to_str().unwrap().to_string();
        assert!(header("content-type").starts_with(kind), "{path}");
        assert!(header("content-security-policy").contains("script-src 'self'"));
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(body.len() > 1000, "{path}: {} bytes", body.len());
    }
    assert_eq!(
        send("GET", &s.url("/dashboard/../Cargo.toml"), None, &[], b"").0,
        404
    );
    assert_eq!(
        send("GET", &s.url("/dashboard/secret.js"), None, &[], b"").0,
        404
    );
}
