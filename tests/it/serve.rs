//! `vcw serve` end to end: a real server process, a real tus client (tuspy), real models,
//! FFmpeg and ffprobe on the segments it serves, a webhook receiver that checks
//! signatures, every endpoint x role, bad input, limits, erasure, and a kill -9 mid-job.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use ureq::http;

use crate::util::{asset, repo, vcw};
use vcw::api::{ENDPOINTS, Role};

const SECRET: &str = "test-webhook-secret";

/// A `vcw serve` / `vcw api` / `vcw worker` process; killed on drop.
pub(crate) struct Server {
    child: Child,
    pub base: String,
    pub dir: PathBuf,
}

pub(crate) fn token(dir: &Path, role: Role) -> String {
    token_with(dir, role, &[])
}

pub(crate) fn token_with(dir: &Path, role: Role, env: &[(&str, &str)]) -> String {
    let out = vcw()
        .args(["token", "create", "--role", role.as_str(), "--data-dir"])
        .arg(dir)
        .envs(env.iter().copied())
        .output()
        .expect("vcw token runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Server {
    pub(crate) fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let data_dir = dir.to_str().unwrap();
        Server::launch(
            &["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
            dir,
            "server.log",
            env,
        )
    }

    /// Runs `vcw ARGS`, logging to `dir/log`, and waits for its first line on stdout
    /// (the listen address, for the API roles).
    pub(crate) fn launch(args: &[&str], dir: &Path, log: &str, env: &[(&str, &str)]) -> Server {
        let mut cmd = vcw();
        cmd.args(args)
            .env("VCW__SERVER__WEBHOOK_SECRET", SECRET)
            .env("VCW__SERVER__WEBHOOK_RETRY_BASE_SECONDS", "0.2")
            // The tests' receivers listen on loopback, which callbacks may not reach
            // unless allowed (tests/it/outbound.rs checks the refusal).
            .env("VCW__SERVER__WEBHOOK_ALLOW", r#"["127.0.0.0/8"]"#)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(dir.join(log)).unwrap()));
        let mut child = cmd.spawn().expect("vcw starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("vcw: "),
            "vcw {args:?} did not start: {line:?}; log: {}",
            std::fs::read_to_string(dir.join(log)).unwrap_or_default()
        );
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_default()
            .to_string();
        Server {
            child,
            base,
            dir: dir.to_path_buf(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
        self.child.wait().unwrap()
    }

    /// Waits for the process to exit by itself (a crash point), at most `secs`; `None` if
    /// it is still running then.
    pub(crate) fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// (status, headers, body) of one request.
pub(crate) fn send(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, http::HeaderMap, Vec<u8>) {
    try_send(method, url, token, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// [`send`], with transport errors (a server that died mid-request) as `Err`.
pub(crate) fn try_send(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, http::HeaderMap, Vec<u8>), ureq::Error> {
    let mut req = http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = agent().run(req.body(body.to_vec()).unwrap())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = if method == "HEAD" {
        Vec::new()
    } else {
        resp.body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()?
    };
    Ok((status, headers, body))
}

pub(crate) fn get_json(url: &str, token: &str) -> (u16, Value) {
    let (status, _, body) = send("GET", url, Some(token), &[], b"");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A consent token for `subject` from the local issuer of the service whose keyring is in
/// `dir` (created if the service has not yet), granting `moderation` for an hour.
pub(crate) fn consent(dir: &Path, subject: &str) -> String {
    vcw::consent::LocalIssuer::open_or_create(&dir.join("consent-issuer.pem"))
        .unwrap()
        .issue(subject, &["moderation".to_string()], 3600)
        .unwrap()
}

pub(crate) fn put_video(
    s: &Server,
    token: &str,
    id: &str,
    file: &Path,
    extra: &[(&str, &str)],
) -> u16 {
    let token_for_subject = consent(&s.dir, "subject-1");
    let mut headers = vec![("vcw-consent", token_for_subject.as_str())];
    headers.extend_from_slice(extra);
    send(
        "PUT",
        &s.url(&format!("/v1/videos/{id}")),
        Some(token),
        &headers,
        &std::fs::read(file).unwrap(),
    )
    .0
}

/// Polls the video until `done(state)`; panics with the server log on timeout.
pub(crate) fn wait_for(
    s: &Server,
    token: &str,
    id: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (_, v) = get_json(&s.url(&format!("/v1/videos/{id}")), token);
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "video {id} stuck at {v}; log:\n{}",
            std::fs::read_to_string(s.dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn state(v: &Value) -> &str {
    v["state"].as_str().unwrap_or("")
}

pub(crate) fn is_final(v: &Value) -> bool {
    matches!(state(v), "done" | "failed" | "dead" | "cancelled")
}

/// Received webhook deliveries: (headers, body).
pub(crate) type Hooks = Arc<Mutex<Vec<(HashMap<String, String>, Vec<u8>)>>>;

/// A webhook receiver that answers 500 to the first delivery (to exercise retries) and
/// 200 afterwards.
pub(crate) fn webhook_receiver() -> (String, Hooks) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hooks: Hooks = Arc::default();
    let seen = hooks.clone();
    std::thread::spawn(move || {
        let mut answered = 0;
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut headers = HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let status = if answered == 0 { "500 Oops" } else { "200 OK" };
            answered += 1;
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            seen.lock().unwrap().push((headers, body));
        }
    });
    (url, hooks)
}

/// Checks `t=..,v1=..` against HMAC-SHA256(secret, "t.body").
pub(crate) fn signature_valid(header: &str, body: &[u8]) -> bool {
    let mut t = "";
    let mut v1 = "";
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x,
            Some(("v1", x)) => v1 = x,
            _ => {}
        }
    }
    let mut mac = <Hmac<Sha256>>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    !t.is_empty() && expected == v1
}

pub(crate) fn tus_upload(s: &Server, token: &str, file: &Path, extra: &[&str]) -> Value {
    let python = repo().join(".cache/tusvenv/bin/python");
    assert!(python.is_file(), "tuspy venv missing: run `make setup`");
    let out = Command::new(python)
        .arg(repo().join("tests/clients/tus_upload.py"))
        .args(["--endpoint", &s.url("/v1/uploads"), "--token", token])
        .arg("--file")
        .arg(file)
        .args(["--consent", &consent(&s.dir, "subject-1")])
        .args(extra)
        .output()
        .expect("tus client runs");
    assert!(
        out.status.success(),
        "tus client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("tus client prints JSON")
}

/// Every stored file (relative) under the filesystem store, excluding directories.
pub(crate) fn stored_files(dir: &Path, prefix: &str) -> Vec<String> {
    let root = dir.join("objects");
    let mut out = Vec::new();
    let mut stack = vec![root.join(prefix)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn tus_upload_to_verdict_playback_and_signed_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let uploader = token(dir.path(), Role::Uploader);
    let reviewer = token(dir.path(), Role::Reviewer);
    let (hook_url, hooks) = webhook_receiver();
    let s = Server::start(dir.path(), &[]);
    let clip = asset("samples/bikes.mp4");

    // An interrupted upload (2 chunks of 100 kB), resumed from the server's offset.
    let meta = format!("callback_url={hook_url}");
    let first = tus_upload(
        &s,
        &uploader,
        &clip,
        &[
            "--chunk-size",
            "100000",
            "--stop-after-chunks",
            "2",
            "--metadata",
            &meta,
        ],
    );
    assert_eq!(first["offset"], 200_000);
    assert_eq!(first["complete"], false);
    let url = first["url"].as_str().unwrap().to_string();
    let second = tus_upload(&s, &uploader, &clip, &["--resume-url", &url]);
    assert_eq!(second["complete"], true);
    let len = std::fs::metadata(&clip).unwrap().len();
    assert_eq!(second["offset"], len);
    let id = url.rsplit('/').next().unwrap().to_string();
    // The last PATCH again (a client that did not see its answer), at the final offset
    // with nothing more: 204 with the offset, as tusd answers; a byte more is a conflict.
    let patch_at_end = |body: &[u8]| {
        send(
            "PATCH",
            &s.url(&format!("/v1/uploads/{id}")),
            Some(&uploader),
            &[
                ("tus-resumable", "1.0.0"),
                ("content-type", "application/offset+octet-stream"),
                ("upload-offset", &len.to_string()),
            ],
            body,
        )
    };
    let (status, headers, _) = patch_at_end(b"");
    assert_eq!(status, 204);
    assert_eq!(headers["upload-offset"], len.to_string().as_str());
    assert_eq!(patch_at_end(b"x").0, 409);

    let v = wait_for(&s, &uploader, &id, 240, is_final);
    assert_eq!(state(&v), "done", "{v}");
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["attempts"], 1);
    assert!(v["report"]["sampled"].as_array().unwrap().len() >= 10);

    // The uploader may read its result but not play; the reviewer plays.
    let playlist_url = s.url(&format!("/v1/videos/{id}/playlist.m3u8"));
    assert_eq!(send("GET", &playlist_url, Some(&uploader), &[], b"").0, 403);
    let (status, _, playlist) = send("GET", &playlist_url, Some(&reviewer), &[], b"");
    assert_eq!(status, 200);
    let playlist = String::from_utf8(playlist).unwrap();
    let segments: Vec<&str> = playlist
        .lines()
        .filter(|l| l.starts_with("segments/"))
        .collect();
    assert!(segments.len() >= 2, "{playlist}");

    // The playlist maps the init segment; init + media segments decrypt to one
    // fragmented MP4 that ffprobe reads, lasting as long as the clip.
    assert!(
        playlist.contains("#EXT-X-MAP:URI=\"segments/init.mp4\""),
        "{playlist}"
    );
    let (status, headers, mut joined) = send(
        "GET",
        &s.url(&format!("/v1/videos/{id}/segments/init.mp4")),
        Some(&reviewer),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "video/mp4");
    assert_eq!(&joined[4..8], b"ftyp");
    let seg_dir = tempfile::tempdir().unwrap();
    for (i, seg) in segments.iter().enumerate() {
        let (status, headers, bytes) = send(
            "GET",
            &s.url(&format!("/v1/videos/{id}/{seg}")),
            Some(&reviewer),
            &[],
            b"",
        );
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "video/mp4");
        joined.extend_from_slice(&bytes);
        if i == 0 {
            let (status, headers, part) = send(
                "GET",
                &s.url(&format!("/v1/videos/{id}/{seg}")),
                Some(&reviewer),
                &[("range", "bytes=1000-1999")],
                b"",
            );
            assert_eq!(status, 206);
            assert_eq!(
                headers["content-range"],
                format!("bytes 1000-1999/{}", bytes.len()).as_str()
            );
            assert_eq!(part, bytes[1000..2000]);
            let (status, ..) = send(
                "GET",
                &s.url(&format!("/v1/videos/{id}/{seg}")),
                Some(&reviewer),
                &[("range", &format!("bytes={}-", bytes.len()))],
                b"",
            );
            assert_eq!(status, 416);
        }
    }
    let joined_path = seg_dir.path().join("joined.mp4");
    std::fs::write(&joined_path, &joined).unwrap();
    let total = crate::util::ffprobe_duration(&joined_path);
    let duration = crate::util::ffprobe_duration(&clip);
    assert!(
        (total - duration).abs() < 0.5,
        "segments {total} s vs clip {duration} s"
    );

    // The staged upload is gone once consumed; only the video's sealed objects remain,
    // and none of them contains the clip's bytes in the clear.
    assert!(stored_files(&s.dir, "staging").is_empty());
    let stored = stored_files(&s.dir, &format!("videos/{id}"));
    assert_eq!(stored.len(), segments.len() + 3, "{stored:?}");
    let needle = &joined[joined.len() / 2..joined.len() / 2 + 64];
    for f in &stored {
        let bytes = std::fs::read(s.dir.join("objects").join(f)).unwrap();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{f} holds plaintext"
        );
    }

    // The webhook: first attempt answered 500, then retried and delivered, signed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while hooks.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "webhook not retried");
        std::thread::sleep(Duration::from_millis(100));
    }
    let hooks = hooks.lock().unwrap();
    for (headers, body) in hooks.iter() {
        assert!(
            signature_valid(&headers["vcw-signature"], body),
            "bad signature"
        );
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(event["event"], "video.completed");
        assert_eq!(event["video_id"], id.as_str());
        assert_eq!(event["verdict"], "allow");
    }
    assert_eq!(hooks[0].0["vcw-delivery"], hooks[1].0["vcw-delivery"]);
    // ...and the delivery is recorded: two attempts, the last one a 200.
    let (_, v) = get_json(&s.url(&format!("/v1/videos/{id}")), &uploader);
    assert_eq!(
        v["webhooks"],
        serde_json::json!([{"event_id": format!("{id}-done"), "attempts": 2, "delivered": true, "last_status": 200, "last_error": null}])
    );
    let mut tampered = hooks[0].1.clone();
    tampered[2] ^= 1;
    assert!(!signature_valid(&hooks[0].0["vcw-signature"], &tampered));
}

/// Every endpoint in the table, for no token and each role: 401 without a token, 403 for
/// a role the table does not list, and never 401/403 for one it lists.
#[test]
fn every_endpoint_checks_every_role() {
    let dir = tempfile::tempdir().unwrap();
    let tokens: Vec<(Role, String)> = Role::ALL
        .iter()
        .map(|r| (*r, token(dir.path(), *r)))
        .collect();
    let s = Server::start(dir.path(), &[]);
    let id = "0123456789abcdef0123456789abcdef";
    for ep in ENDPOINTS {
        let path = ep.path.replace("{id}", id).replace("{n}", "0");
        let url = s.url(&path.replace("{file}", "app.js"));
        let (status, ..) = send(ep.method, &url, None, &[], b"");
        if ep.roles.is_empty() {
            // Public: answered without a token (sign-in refuses an empty body as such).
            let refused_body = ep.path == "/dashboard/login" && status == 415;
            assert!(
                status < 400 || refused_body,
                "{} {}: {status} without a token",
                ep.method,
                ep.path
            );
            continue;
        }
        assert_eq!(status, 401, "{} {} without a token", ep.method, ep.path);
        let (status, ..) = send(ep.method, &url, Some("vcw_not-a-token"), &[], b"");
        assert_eq!(status, 401, "{} {} with a bad token", ep.method, ep.path);
        for (role, t) in &tokens {
            let (status, _, body) = send(ep.method, &url, Some(t), &[], b"");
            // A role allowed in may still be refused for the data subject's consent
            // (a consent token missing), never for its token or role.
            let code =
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null)["error"].clone();
            if ep.roles.contains(role) {
                assert!(
                    (status != 401 && status != 403) || code == "consent",
                    "{} {} as {}: {status}",
                    ep.method,
                    ep.path,
                    role.as_str()
                );
            } else {
                assert_eq!(
                    status,
                    403,
                    "{} {} as {}",
                    ep.method,
                    ep.path,
                    role.as_str()
                );
            }
        }
    }

    // A path in the table with a method it does not list: 405 naming what is allowed,
    // before any token is looked at.
    let admin = &tokens.iter().find(|(r, _)| *r == Role::Admin).unwrap().1;
    for (method, path, allow) in [
        ("DELETE", "/v1/dashboard", "GET"),
        ("PUT", "/v1/uploads", "OPTIONS, POST"),
        ("POST", &format!("/v1/videos/{id}/playlist.m3u8"), "GET"),
    ] {
        for t in [None, Some(admin.as_str())] {
            let (status, h, _) = send(method, &s.url(path), t, &[], b"");
            assert_eq!(status, 405, "{method} {path}");
            assert_eq!(h["allow"], allow, "{method} {path}");
        }
    }

    // The OpenAPI document lists exactly the table, with its roles.
    let (status, _, body) = send("GET", &s.url("/openapi.json"), None, &[], b"");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(operations, ENDPOINTS.len());
    for ep in ENDPOINTS {
        let op = &doc["paths"][ep.path][ep.method.to_ascii_lowercase()];
        let roles: Vec<&str> = ep.roles.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            op["x-vcw-roles"],
            serde_json::json!(roles),
            "{} {}",
            ep.method,
            ep.path
        );
    }
}

#[test]
fn bad_input_is_refused_and_leaves_stored_data_intact() {
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let other = token(dir.path(), Role::Uploader);
    let s = Server::start(
        dir.path(),
        &[
            ("VCW__LIMITS__MAX_FILE_SIZE", "3000000"),
            ("VCW__SERVER__OPEN_UPLOAD_BYTES", "5000000"),
            ("VCW__S3__ENDPOINT", "http://127.0.0.1:9"),
            ("VCW__S3__REGION", "us-east-1"),
            ("VCW__S3__ACCESS_KEY", "x"),
            ("VCW__S3__SECRET_KEY", "y"),
            ("VCW__SERVER__MAX_ATTEMPTS", "2"),
            ("VCW__SERVER__RETRY_BASE_SECONDS", "0.2"),
            ("VCW__SERVER__S3_SOURCES", r#"["s3://bucket/"]"#),
        ],
    );
    let uploads = s.url("/v1/uploads");
    let tus = ("tus-resumable", "1.0.0");
    let token_for_subject = consent(&s.dir, "subject-1");
    let subject = ("vcw-consent", token_for_subject.as_str());
    let post = |h: &[(&str, &str)]| send("POST", &uploads, Some(&up), h, b"");

    assert_eq!(
        post(&[("upload-length", "100"), subject]).0,
        400,
        "no Tus-Resumable"
    );
    assert_eq!(
        post(&[
            ("tus-resumable", "0.2.2"),
            ("upload-length", "100"),
            subject
        ])
        .0,
        412,
        "another tus version"
    );
    assert_eq!(post(&[tus, ("upload-length", "100")]).0, 401, "no consent");
    let named = ("upload-metadata", "subject c3ViamVjdC0x");
    assert_eq!(
        post(&[tus, subject, named, ("upload-length", "100")]).0,
        400,
        "a subject named outside the token"
    );
    assert_eq!(post(&[tus, subject]).0, 400, "no length");
    assert_eq!(post(&[tus, subject, ("upload-length", "5000000")]).0, 413);
    let (status, headers, _) = post(&[tus, subject, ("upload-length", "400")]);
    assert_eq!(status, 201);
    let upload = s.url(headers["location"].to_str().unwrap());
    // Unfinished uploads may reserve 5 MB per token: 400 B + 2.9 MB fit, 2.9 MB more do
    // not, and another token has its own budget.
    let big = ("upload-length", "2900000");
    assert_eq!(post(&[tus, subject, big]).0, 201);
    let (status, headers, body) = post(&[tus, subject, big]);
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains_key("retry-after"));
    let other_subject = consent(&s.dir, "subject-2");
    let theirs = [tus, ("vcw-consent", other_subject.as_str()), big];
    assert_eq!(send("POST", &uploads, Some(&other), &theirs, b"").0, 201);

    let mp4_head = {
        let mut b = std::fs::read(asset("samples/bikes.mp4")).unwrap();
        b.truncate(400);
        b
    };
    let octets = ("content-type", "application/offset+octet-stream");
    let patch = |offset: &str, ct: (&str, &str), body: &[u8], t: &str| {
        send(
            "PATCH",
            &upload,
            Some(t),
            &[tus, ct, ("upload-offset", offset)],
            body,
        )
        .0
    };
    assert_eq!(
        patch("0", ("content-type", "text/plain"), &mp4_head, &up),
        415
    );
    assert_eq!(
        patch("0", octets, b"hello, this is not a video at all", &up),
        415
    );
    assert_eq!(patch("5", octets, &mp4_head[..10], &up), 409);
    assert_eq!(
        patch("0", octets, &mp4_head[..200], &other),
        404,
        "not its upload"
    );
    assert_eq!(patch("0", octets, &mp4_head[..200], &up), 204);
    assert_eq!(
        patch("0", octets, &mp4_head[200..], &up),
        409,
        "stale offset"
    );
    let (status, headers, _) = send("HEAD", &upload, Some(&up), &[tus], b"");
    assert_eq!(status, 200);
    assert_eq!(
        headers["upload-offset"], "200",
        "refused requests changed nothing"
    );
    assert_eq!(stored_files(&s.dir, "staging").len(), 1);
    assert_eq!(send("DELETE", &upload, Some(&up), &[tus], b"").0, 204);
    assert_eq!(send("HEAD", &upload, Some(&up), &[tus], b"").0, 410);
    assert!(
        stored_files(&s.dir, "staging").is_empty(),
        "termination deletes parts"
    );

    // Plain PUT: not a video, no consent, bad id. (Bodies stay small: the server answers
    // before reading them, and a client still sending a large body may see a reset.)
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "just some text, definitely not a video container").unwrap();
    assert_eq!(
        put_video(&s, &up, "00000000000000000000000000000001", &text, &[]),
        415
    );
    let (status, ..) = send(
        "PUT",
        &s.url("/v1/videos/00000000000000000000000000000002"),
        Some(&up),
        &[],
        &mp4_head,
    );
    assert_eq!(status, 401, "no consent token");
    let head_file = dir.path().join("head.mp4");
    std::fs::write(&head_file, &mp4_head).unwrap();
    assert_eq!(put_video(&s, &up, "not-an-id", &head_file, &[]), 400);

    // Looks like MP4, is not: accepted, then failed at once (no retry for bad input).
    let fake = dir.path().join("fake.mp4");
    let mut bytes = mp4_head[..32].to_vec();
    bytes.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&fake, bytes).unwrap();
    let fake_id = "00000000000000000000000000000004";
    assert_eq!(put_video(&s, &up, fake_id, &fake, &[]), 202);
    assert_eq!(
        put_video(&s, &up, fake_id, &fake, &[]),
        409,
        "ids are unique"
    );
    let v = wait_for(&s, &up, fake_id, 60, is_final);
    assert_eq!(state(&v), "failed", "{v}");
    assert_eq!(v["attempts"], 1);
    assert!(v["error"].as_str().unwrap().contains("upload"), "{v}");

    // S3 sources outside the allow list, or malformed, are refused before anything runs.
    let submit = |job: Value| {
        send(
            "POST",
            &s.url("/v1/jobs"),
            Some(&up),
            &[("content-type", "application/json"), subject],
            job.to_string().as_bytes(),
        )
    };
    for (url, why) in [
        (
            "s3://private-bucket/payroll.mp4",
            "not under an allowed source",
        ),
        ("s3://bucket/../other/key.mp4", "dot segments"),
        ("s3://bucket/", "key is empty"),
    ] {
        let (status, _, body) = submit(serde_json::json!({ "source": {"s3": {"url": url}} }));
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body.contains(why), "{url}: {body}");
    }

    // An S3 source that cannot be reached: retried with backoff, then dead, with a
    // signed failure webhook.
    let (hook_url, hooks) = webhook_receiver();
    let job = serde_json::json!({
        "source": {"s3": {"url": "s3://bucket/video.mp4"}},
        "callback_url": hook_url,
    });
    let (status, _, body) = submit(job);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = wait_for(&s, &up, &id, 120, is_final);
    assert_eq!(state(&v), "dead", "{v}");
    assert_eq!(v["attempts"], 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while hooks.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "failure webhook not delivered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (headers, body) = &hooks.lock().unwrap()[1];
    assert!(signature_valid(&headers["vcw-signature"], body));
    assert_eq!(
        serde_json::from_slice::<Value>(body).unwrap()["event"],
        "video.failed"
    );

    // An operator retries the dead job (admin only): it runs max_attempts more times
    // (S3 is still unreachable, so it dies again). A failed upload job cannot be
    // retried: its staged data is gone.
    let admin = token(dir.path(), Role::Admin);
    let retry = |id: &str, who: &str| {
        let (status, _, body) = send(
            "POST",
            &s.url(&format!("/v1/videos/{id}/retry")),
            Some(who),
            &[],
            b"",
        );
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(retry(&id, &up).0, 403);
    assert_eq!(retry(&id, &admin).0, 200);
    let v = wait_for(&s, &up, &id, 120, |v| {
        state(v) == "dead" && v["attempts"] == 4
    });
    assert!(v["error"].is_string(), "{v}");
    let (status, why) = retry(fake_id, &admin);
    assert_eq!(status, 409);
    assert!(why.contains("upload the video again"), "{why}");
    assert_eq!(retry("0000000000000000000000000000ffff", &admin).0, 404);

    // Unknown fields and sources are refused.
    let (status, ..) = send(
        "POST",
        &s.url("/v1/jobs"),
        Some(&up),
        &[("content-type", "application/json")],
        br#"{"source": {"file": {"path": "/etc/passwd"}}, "subject": "s"}"#,
    );
    assert_eq!(status, 422);
}

#[test]
fn full_queue_and_rate_limits_answer_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let reviewer = token(dir.path(), Role::Reviewer);
    let s = Server::start(
        dir.path(),
        &[
            ("VCW__SERVER__QUEUE_CAPACITY", "1"),
            ("VCW__SERVER__RATE_PER_SECOND", "0.5"),
            ("VCW__SERVER__RATE_BURST", "6"),
        ],
    );
    // A small clip, so that a refused body fits in the socket buffers.
    let clip = dir.path().join("small.mp4");
    crate::util::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=2:size=128x96:rate=10",
        "-pix_fmt",
        "yuv420p",
        clip.to_str().unwrap(),
    ]);
    let statuses: Vec<u16> = (0..3)
        .map(|i| put_video(&s, &up, &format!("{i:032x}"), &clip, &[]))
        .collect();
    assert!(
        statuses.contains(&202) && statuses.contains(&429),
        "{statuses:?}"
    );
    let mut limited = None;
    for _ in 0..6 {
        let (status, headers, _) = send("GET", &s.url("/v1/videos/00"), Some(&up), &[], b"");
        if status == 429 {
            limited = Some(headers);
            break;
        }
    }
    let headers = limited.expect("rate limit reached within the burst");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry));

    // Token ids are public (owners, audit actors). A spray of the reviewer's id with
    // made-up secrets, past its burst, leaves the reviewer's own limit untouched.
    let id = &reviewer[4..20];
    for n in 0..10 {
        let forged = format!("vcw_{id}_forged-secret-{n}");
        let status = send("GET", &s.url("/v1/videos/00"), Some(&forged), &[], b"").0;
        assert!(matches!(status, 401 | 429), "{status}");
    }
    let status = send("GET", &s.url("/v1/videos/00"), Some(&reviewer), &[], b"").0;
    assert_eq!(status, 404, "the reviewer is not held back by the spray");
}

/// A policy that blocks any video with a face: to see 451 and erasure on real media.
fn blocking_policy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("src/policy/default.toml"))
        .unwrap()
        .replace(
            "version = \"vcw-default-1\"",
            "version = \"test-block-faces\"",
        )
        .replace("p_minor = 0.50", "p_minor = 0.0")
        .replace("agree = 0.50", "agree = 0.0")
        .replace("action = \"review\"", "action = \"block\"");
    let path = dir.join("block-faces.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn blocked_videos_are_not_served_and_erasure_really_erases() {
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let reviewer = token(dir.path(), Role::Reviewer);
    let officer = token(dir.path(), Role::PrivacyOfficer);
    let policy = blocking_policy(dir.path());
    let s = Server::start(dir.path(), &[("VCW__POLICY", policy.to_str().unwrap())]);

    let blocked = "b10cced0000000000000000000000000";
    assert_eq!(
        put_video(
            &s,
            &up,
            blocked,
            &asset("samples/carphone_pristine.mp4"),
            &[]
        ),
        202
    );
    let v = wait_for(&s, &up, blocked, 240, is_final);
    assert_eq!(v["verdict"], "block", "{v}");
    let playlist = s.url(&format!("/v1/videos/{blocked}/playlist.m3u8"));
    assert_eq!(send("GET", &playlist, Some(&reviewer), &[], b"").0, 451);
    assert_eq!(
        send(
            "GET",
            &s.url(&format!("/v1/videos/{blocked}/segments/0")),
            Some(&reviewer),
            &[],
            b""
        )
        .0,
        451
    );

    let kept = "0000000000000000000000000000cafe";
    assert_eq!(
        put_video(&s, &up, kept, &asset("samples/bikes.mp4"), &[]),
        202
    );
    let v = wait_for(&s, &up, kept, 240, is_final);
    assert_eq!(v["verdict"], "allow", "{v}");
    let playlist = s.url(&format!("/v1/videos/{kept}/playlist.m3u8"));
    assert_eq!(send("GET", &playlist, Some(&reviewer), &[], b"").0, 200);
    let kept_files = stored_files(&s.dir, &format!("videos/{kept}"));

    // Reviewers and uploaders cannot erase; the privacy officer can.
    let video = s.url(&format!("/v1/videos/{kept}"));
    assert_eq!(send("DELETE", &video, Some(&reviewer), &[], b"").0, 403);
    assert_eq!(send("DELETE", &video, Some(&up), &[], b"").0, 403);
    let (status, _, body) = send("DELETE", &video, Some(&officer), &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let erased: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(erased["objects_shredded"], kept_files.len() as u64);
    assert_eq!(send("GET", &playlist, Some(&reviewer), &[], b"").0, 410);
    assert!(stored_files(&s.dir, &format!("videos/{kept}")).is_empty());
    let (_, v) = get_json(&video, &officer);
    assert_eq!(v["erased"], true);
    assert_eq!(v["report"], Value::Null, "evidence is erased too");
    assert_eq!(
        v["verdict"], "allow",
        "the verdict stays for the audit trail"
    );
    // Copies of the sealed bytes kept elsewhere stay unreadable: their keys are shredded.
    let out = vcw()
        .args(["keys", "shred", "--object", &"0".repeat(32), "--data-dir"])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "unknown objects are refused");
}

/// kill -9 in the middle of a job; after a restart the job is redone once, and nothing
/// of the killed attempt remains.
#[test]
fn a_worker_killed_mid_job_is_redone_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let env = [("VCW__SERVER__LEASE_SECONDS", "2")];
    let mut s = Server::start(dir.path(), &env);
    let id = "c4a5e000000000000000000000000001";
    assert_eq!(
        put_video(&s, &up, id, &asset("samples/generated/longgop.mp4"), &[]),
        202
    );
    wait_for(&s, &up, id, 120, |v| {
        state(v) == "running" && v["progress"].as_f64().unwrap_or(0.0) > 0.05
    });
    s.kill();

    let s = Server::start(dir.path(), &env);
    let v = wait_for(&s, &up, id, 300, is_final);
    assert_eq!(state(&v), "done", "{v}");
    assert_eq!(v["attempts"], 2, "redelivered once after the lease expired");

    // Exactly the manifest's objects are stored, each with one catalog row.
    let stored = stored_files(&s.dir, &format!("videos/{id}"));
    let playlist = s.url(&format!("/v1/videos/{id}/playlist.m3u8"));
    let admin = token(dir.path(), Role::Admin);
    let (status, _, body) = send("GET", &playlist, Some(&admin), &[], b"");
    assert_eq!(status, 200);
    let segments = String::from_utf8(body)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("segments/"))
        .count();
    // Segments, the init segment, the playlist and the manifest.
    assert_eq!(stored.len(), segments + 3, "{stored:?}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = rt.block_on(async {
        let catalog = vcw::catalog::Catalog::open(&s.dir).await.unwrap();
        let location = format!("fs:{}/videos/{id}/", s.dir.join("objects").display());
        catalog.objects_at(&location).await.unwrap()
    });
    assert_eq!(rows.len(), stored.len(), "no orphan catalog rows");
    assert!(stored_files(&s.dir, "staging").is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

/// `vcw submit --wait` end to end; SIGTERM lets the running job finish before exiting;
/// HTTPS with HSTS when a certificate is configured.
#[test]
fn submit_drain_on_sigterm_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let mut s = Server::start(dir.path(), &[]);
    let out = vcw()
        .arg("submit")
        .arg(asset("samples/bikes.mp4"))
        .args([
            "--server",
            &s.base,
            "--token",
            &up,
            "--subject",
            "subject-1",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--wait",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "done");
    assert_eq!(v["verdict"], "allow");

    let id = "d7a10000000000000000000000000001";
    let out = vcw()
        .arg("submit")
        .arg(asset("samples/generated/longgop.mp4"))
        .args([
            "--server",
            &s.base,
            "--token",
            &up,
            "--subject",
            "s",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--id",
            id,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(&s, &up, id, 120, |v| state(v) == "running");
    let status = s.terminate();
    assert!(status.success(), "clean exit after draining: {status}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let video = rt.block_on(async {
        let catalog = vcw::catalog::Catalog::open(dir.path()).await.unwrap();
        catalog.video(id).await.unwrap().unwrap()
    });
    assert_eq!(
        video.state.as_str(),
        "done",
        "the in-flight job finished before exit"
    );

    // HTTPS: a self-signed certificate from the openssl CLI.
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl req");
    let tls = Server::start(
        dir.path(),
        &[
            ("VCW__SERVER__TLS_CERT", cert.to_str().unwrap()),
            ("VCW__SERVER__TLS_KEY", key.to_str().unwrap()),
        ],
    );
    assert!(tls.base.starts_with("https://"), "{}", tls.base);
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "--cacert"])
        .arg(&cert)
        .arg(tls.url("/healthz"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("strict-transport-security: max-age="),
        "{text}"
    );
    let plain = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(tls.url("/healthz").replace("https://", "http://"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout),
        "000",
        "no plaintext HTTP"
    );
}

#[test]
fn cancelling_a_running_job_stops_it_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let other = token(dir.path(), Role::Uploader);
    let s = Server::start(dir.path(), &[("VCW__SERVER__LEASE_SECONDS", "1.5")]);
    let id = "ca9ce100000000000000000000000001";
    // Long enough to be cancelled mid-way: the long-GOP clip six times over (stream copy).
    let clip = dir.path().join("long.mp4");
    let src = asset("samples/generated/longgop.mp4");
    crate::util::ffmpeg(&[
        "-stream_loop",
        "5",
        "-i",
        src.to_str().unwrap(),
        "-c",
        "copy",
        clip.to_str().unwrap(),
    ]);
    let (status, ..) = send(
        "PUT",
        &s.url(&format!("/v1/videos/{id}")),
        Some(&up),
        &[("vcw-consent", &consent(&s.dir, "s"))],
        &std::fs::read(clip).unwrap(),
    );
    assert_eq!(status, 202);
    wait_for(&s, &up, id, 120, |v| state(v) == "running");
    let cancel = s.url(&format!("/v1/videos/{id}/cancel"));
    assert_eq!(
        send("POST", &cancel, Some(&other), &[], b"").0,
        404,
        "not its video"
    );
    assert_eq!(send("POST", &cancel, Some(&up), &[], b"").0, 202);
    let v = wait_for(&s, &up, id, 60, is_final);
    assert_eq!(state(&v), "cancelled", "{v}");
    assert_eq!(v["attempts"], 1);
    assert!(stored_files(&s.dir, &format!("videos/{id}")).is_empty());
    assert!(stored_files(&s.dir, "staging").is_empty());
}

/// Several large uploads stream in at once while `/healthz` is probed the way a kubelet
/// does (1 s timeout, its default): sealing runs on the blocking pool, not on the async
/// workers that answer the probe, so no probe fails, and every upload arrives whole.
#[test]
fn healthz_answers_while_large_uploads_stream_in() {
    const LEN: usize = 64 << 20;
    const UPLOADS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let s = Server::start(dir.path(), &[]);
    let consent = consent(&s.dir, "subject-1");
    let tus = ("tus-resumable", "1.0.0");
    let length = LEN.to_string();
    let created: Vec<String> = (0..UPLOADS)
        .map(|_| {
            let (status, headers, _) = send(
                "POST",
                &s.url("/v1/uploads"),
                Some(&up),
                &[tus, ("vcw-consent", &consent), ("upload-length", &length)],
                b"",
            );
            assert_eq!(status, 201);
            s.url(headers["location"].to_str().unwrap())
        })
        .collect();
    // A real container head, then filler: what matters here is the bytes sealed.
    let mut body = std::fs::read(asset("samples/bikes.mp4")).unwrap();
    body.resize(LEN, 0x5a);
    let body = &body;

    let finished = std::sync::atomic::AtomicUsize::new(0);
    let probe: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .into();
    let mut probes = 0;
    std::thread::scope(|scope| {
        for upload in &created {
            let (finished, up, length) = (&finished, &up, &length);
            scope.spawn(move || {
                let headers = [
                    tus,
                    ("content-type", "application/offset+octet-stream"),
                    ("upload-offset", "0"),
                ];
                let (status, h, _) = send("PATCH", upload, Some(up), &headers, body);
                assert_eq!(status, 204);
                assert_eq!(h["upload-offset"], length.as_str());
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        while finished.load(std::sync::atomic::Ordering::SeqCst) < UPLOADS {
            let answer = probe.get(&s.url("/healthz")).call();
            assert!(
                answer.as_ref().is_ok_and(|r| r.status() == 200),
                "a liveness probe failed during the uploads: {:?}",
                answer.err()
            );
            probes += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert!(probes >= 5, "probed {probes} times during the uploads");
    eprintln!(
        "{UPLOADS} uploads of {} MiB, {probes} probes answered",
        LEN >> 20
    );
}

/// tus checksum and expiration: a PATCH whose body does not match its `Upload-Checksum`
/// is refused with 460 and nothing of it is kept; matching ones (sha1, sha256) are
/// stored; an unknown algorithm is a 400; `Upload-Expires` tells the client when an
/// unfinished upload goes (`server.upload_expiry_seconds`), and the finished video is
/// the bytes sent.
#[test]
fn tus_checksums_and_expiry() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let s = Server::start(dir.path(), &[]);
    let uploads = s.url("/v1/uploads");
    let tus = ("tus-resumable", "1.0.0");
    let (status, h, _) = send("OPTIONS", &uploads, None, &[tus], b"");
    assert_eq!(status, 204);
    let extensions = h["tus-extension"].to_str().unwrap();
    assert!(extensions.contains("checksum") && extensions.contains("expiration"));
    assert_eq!(h["tus-checksum-algorithm"], "sha1,sha256");

    let video = std::fs::read(asset("samples/bikes.mp4")).unwrap();
    let consent = consent(&s.dir, "subject-1");
    let length = video.len().to_string();
    let (status, h, _) = send(
        "POST",
        &uploads,
        Some(&up),
        &[tus, ("vcw-consent", &consent), ("upload-length", &length)],
        b"",
    );
    assert_eq!(status, 201);
    let upload = s.url(h["location"].to_str().unwrap());
    let expires = httpdate::parse_http_date(h["upload-expires"].to_str().unwrap()).unwrap();
    let in_a_day = std::time::SystemTime::now() + Duration::from_secs(86_400);
    let off = |a: std::time::SystemTime, b: std::time::SystemTime| {
        a.duration_since(b)
            .or_else(|_| b.duration_since(a))
            .unwrap()
    };
    assert!(off(expires, in_a_day) < Duration::from_secs(120));

    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let sha1 = |d: &[u8]| format!("sha1 {}", b64(&sha1::Sha1::digest(d)));
    let sha256 = |d: &[u8]| format!("sha256 {}", b64(&Sha256::digest(d)));
    let half = video.len() / 2;
    let patch = |offset: usize, body: &[u8], checksum: &str| {
        let offset = offset.to_string();
        send(
            "PATCH",
            &upload,
            Some(&up),
            &[
                tus,
                ("content-type", "application/offset+octet-stream"),
                ("upload-offset", &offset),
                ("upload-checksum", checksum),
            ],
            body,
        )
    };
    let offset = || send("HEAD", &upload, Some(&up), &[tus], b"").1["upload-offset"].clone();

    // Damaged on the way: one byte differs from what was hashed.
    let mut damaged = video[..half].to_vec();
    damaged[half / 2] ^= 1;
    assert_eq!(patch(0, &damaged, &sha256(&video[..half])).0, 460);
    assert_eq!(offset(), "0", "nothing of a mismatched body is kept");
    let md5 = "md5 XUFAKrxLKna5cZ2REBfFkg==";
    assert_eq!(patch(0, &video[..half], md5).0, 400);
    assert_eq!(patch(0, &video[..half], "sha1").0, 400);

    let (status, h, _) = patch(0, &video[..half], &sha1(&video[..half]));
    assert_eq!(status, 204);
    assert_eq!(h["upload-offset"], half.to_string().as_str());
    assert!(h.contains_key("upload-expires"), "still receiving");
    let (status, h, _) = patch(half, &video[half..], &sha256(&video[half..]));
    assert_eq!(status, 204);
    assert!(
        !h.contains_key("upload-expires"),
        "complete: it no longer expires"
    );
    let id = h["vcw-video"].to_str().unwrap().rsplit('/').next().unwrap();
    let v = wait_for(&s, &up, id, 120, is_final);
    assert_eq!(state(&v), "done", "{v}");
}

/// A refusal made before the body is read still reaches a client that is sending a large
/// body: the server reads (and drops) a bounded part of it instead of resetting the
/// connection under the client, which would see a broken pipe instead of the 4xx. Every
/// kind of early refusal, and a JSON body over the limit, several times each, on fresh
/// connections.
#[test]
fn refusals_reach_a_client_still_sending_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let other = token(dir.path(), Role::Uploader);
    let reviewer = token(dir.path(), Role::Reviewer);
    let s = Server::start(dir.path(), &[]);
    let tus = ("tus-resumable", "1.0.0");
    let consent = consent(&s.dir, "subject-1");
    let subject = ("vcw-consent", consent.as_str());
    let body = {
        let mut b = std::fs::read(asset("samples/bikes.mp4")).unwrap();
        b.resize(900_000, 0);
        b
    };
    let length = body.len().to_string();
    let (status, h, _) = send(
        "POST",
        &s.url("/v1/uploads"),
        Some(&up),
        &[tus, subject, ("upload-length", &length)],
        b"",
    );
    assert_eq!(status, 201);
    let upload = s.url(h["location"].to_str().unwrap());
    let octets = ("content-type", "application/offset+octet-stream");
    let at_zero = ("upload-offset", "0");
    let video = s.url("/v1/videos/0123456789abcdef0123456789abcdef");
    let not_a_video = vec![0u8; body.len()];
    /// Method, URL, token, headers, body, the status wanted.
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Vec<(&'a str, &'a str)>,
        &'a [u8],
        u16,
    );
    let json = ("content-type", "application/json");
    let jobs = s.url("/v1/jobs");
    let cases: [Case; 10] = [
        (
            "PATCH",
            &upload,
            None,
            vec![tus, octets, at_zero],
            &body,
            401,
        ),
        (
            "PATCH",
            &upload,
            Some(&reviewer),
            vec![tus, octets, at_zero],
            &body,
            403,
        ),
        (
            "PATCH",
            &upload,
            Some(&other),
            vec![tus, octets, at_zero],
            &body,
            404,
        ),
        ("PATCH", &upload, Some(&up), vec![tus, at_zero], &body, 415),
        (
            "PATCH",
            &upload,
            Some(&up),
            vec![tus, octets, ("upload-offset", "7")],
            &body,
            409,
        ),
        (
            "PATCH",
            &upload,
            Some(&up),
            vec![
                tus,
                octets,
                at_zero,
                ("upload-checksum", "md5 XUFAKrxLKna5cZ2REBfFkg=="),
            ],
            &body,
            400,
        ),
        (
            "PATCH",
            &upload,
            Some(&up),
            vec![tus, octets, at_zero],
            &not_a_video,
            415,
        ),
        (
            "PUT",
            &s.url("/v1/videos/nope"),
            Some(&up),
            vec![subject],
            &body,
            400,
        ),
        ("PUT", &video, Some(&up), vec![], &body, 401),
        ("POST", &jobs, Some(&up), vec![json], &body, 413),
    ];
    for round in 0..3 {
        for (method, url, token, headers, body, want) in &cases {
            let answer = try_send(method, url, *token, headers, body).map(|r| r.0);
            assert!(
                matches!(answer, Ok(status) if status == *want),
                "round {round}: {method} {url} {headers:?}: want {want}, got {answer:?}"
            );
        }
    }
    let (_, h, _) = send("HEAD", &upload, Some(&up), &[tus], b"");
    assert_eq!(h["upload-offset"], "0", "nothing refused was kept");
}
