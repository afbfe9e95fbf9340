//! Callbacks are requests vcw makes for an uploader: they never reach internal addresses
//! unless the operator allows them (SSRF), redirects are not followed, and a receiver
//! that hangs delays only its own deliveries.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::{
    Server, get_json, is_final, put_video, state, token, wait_for, webhook_receiver,
};
use crate::util::asset;
use vcw::api::Role;

/// Waits until `cond` holds, at most `secs`.
fn eventually(secs: u64, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads one HTTP request (head and body) from `conn`.
fn read_request(conn: &std::net::TcpStream) {
    let mut reader = BufReader::new(conn);
    let mut len = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
}

/// A receiver that answers every request with `answer`, or with nothing (holding the
/// connection open) when there is none; counts the requests it got.
fn receiver(answer: Option<String>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(AtomicUsize::new(0));
    let seen = got.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            read_request(&conn);
            seen.fetch_add(1, Ordering::SeqCst);
            match &answer {
                Some(a) => drop(conn.write_all(a.as_bytes())),
                None => held.push(conn),
            }
        }
    });
    (url, got)
}

fn deliveries(s: &Server, token: &str, id: &str) -> Vec<Value> {
    let (_, v) = get_json(&s.url(&format!("/v1/videos/{id}")), token);
    v["webhooks"].as_array().cloned().unwrap_or_default()
}

#[test]
fn callbacks_never_reach_internal_addresses_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    let s = Server::start(dir.path(), &[("VCW__SERVER__WEBHOOK_ALLOW", "[]")]);
    let (hook, hooks) = webhook_receiver();
    let port = hook.rsplit(':').next().unwrap().trim_end_matches("/hook");
    let clip = asset("samples/carphone_pristine.mp4");
    let id = |n: u32| format!("0b0b0000000000000000000000000{n:03}");

    // Internal addresses written in the URL: refused at once, saying why.
    for (n, url, kind) in [
        (
            1,
            format!("http://127.0.0.1:{port}/internal-admin"),
            "loopback",
        ),
        (2, format!("http://[::ffff:127.0.0.1]:{port}/"), "loopback"),
        (
            3,
            "http://169.254.169.254/latest/meta-data".to_string(),
            "link-local",
        ),
        (4, "http://10.0.0.7/hook".to_string(), "private"),
        (5, "http://[fd00::1]/hook".to_string(), "unique-local"),
        (6, "http://0.0.0.0:9/".to_string(), "unspecified"),
    ] {
        let callback = [("vcw-callback-url", url.as_str())];
        let (status, _, body) = crate::serve::send(
            "PUT",
            &s.url(&format!("/v1/videos/{}", id(n))),
            Some(&up),
            &[
                ("vcw-consent", &crate::serve::consent(&s.dir, "subject-1")),
                callback[0],
            ],
            &std::fs::read(&clip).unwrap(),
        );
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body.contains(kind), "{url}: {body}");
    }

    // A name that resolves to an internal address: accepted, but never delivered to.
    let sneaky = format!("http://localhost:{port}/internal-admin");
    let video = id(7);
    assert_eq!(
        put_video(&s, &up, &video, &clip, &[("vcw-callback-url", &sneaky)]),
        202
    );
    assert_eq!(state(&wait_for(&s, &up, &video, 120, is_final)), "done");
    eventually(30, "the refused delivery is recorded", || {
        deliveries(&s, &up, &video)
            .first()
            .and_then(|d| d["last_error"].as_str())
            .is_some_and(|e| e == vcw::dispatcher::WEBHOOK_NO_ANSWER)
    });
    let d = &deliveries(&s, &up, &video)[0];
    assert_eq!(d["delivered"], false, "{d}");
    // Its owner is not told what the name resolved to; the log says why.
    assert!(!d.to_string().contains("127.0.0.1"), "{d}");
    let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap();
    assert!(log.contains("loopback"), "the cause is logged");
    assert!(
        hooks.lock().unwrap().is_empty(),
        "nothing reached the receiver"
    );
}

#[test]
fn a_hanging_receiver_delays_only_itself_and_redirects_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let up = token(dir.path(), Role::Uploader);
    // Loopback allowed (the default of the tests' servers); one delivery per receiver at
    // a time, and a minute before an unanswered one gives up.
    let s = Server::start(
        dir.path(),
        &[
            ("VCW__SERVER__WEBHOOK_PER_HOST", "1"),
            ("VCW__SERVER__WEBHOOK_TIMEOUT_SECONDS", "60"),
        ],
    );
    let (hanging, hung) = receiver(None);
    let (fast, fast_hooks) = webhook_receiver();
    let redirect = format!("HTTP/1.1 302 Found\r\nlocation: {fast}\r\ncontent-length: 0\r\n\r\n");
    let (redirecting, redirected) = receiver(Some(redirect));
    let clip = asset("samples/carphone_pristine.mp4");

    // Two videos for the hanging receiver (one slot each: the second waits), then one
    // for a healthy receiver, which must not wait behind them.
    for (n, url) in [(1, &hanging), (2, &hanging), (3, &fast), (4, &redirecting)] {
        let id = format!("0c0c0000000000000000000000000{n:03}");
        let callback = [("vcw-callback-url", url.as_str())];
        assert_eq!(put_video(&s, &up, &id, &clip, &callback), 202);
    }
    eventually(120, "the hanging receiver holds a delivery", || {
        hung.load(Ordering::SeqCst) >= 1
    });
    // The healthy receiver answers 500 to its first request, then 200.
    eventually(120, "the healthy receiver is served meanwhile", || {
        fast_hooks.lock().unwrap().len() >= 2
    });
    assert!(
        hung.load(Ordering::SeqCst) <= 1,
        "one slot for the hanging receiver: its second delivery waits"
    );
    // The redirect was answered, recorded as such, and not followed.
    let id = "0c0c0000000000000000000000000004";
    eventually(60, "the redirect is recorded", || {
        deliveries(&s, &up, id)
            .first()
            .is_some_and(|d| d["last_status"] == 302)
    });
    assert!(redirected.load(Ordering::SeqCst) >= 1);
    let to_fast = fast_hooks.lock().unwrap().len();
    assert_eq!(to_fast, 2, "the redirect's target got nothing from it");
}
