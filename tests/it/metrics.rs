//! Prometheus metrics of a real run: `GET /metrics` needs no token, passes `promtool check
//! metrics` (Debian's `prometheus` package), counts what happened (requests by route
//! template, jobs, frames, inference per model, bytes sealed and opened, cache, reaper)
//! and never names a video or a subject. The same run logs JSON lines carrying the
//! request's and the job's span.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::serve::{Server, is_final, put_video, send, state, token, wait_for};
use crate::util::asset;
use vcw::api::Role;

/// `promtool check metrics` on `text`: (exit code, its complaints).
pub(crate) fn promtool(text: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (make setup: Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), said)
}

/// The status of a bare HTTP/1.1 request: for methods an HTTP client library refuses
/// to send.
fn raw_status(s: &Server, method: &str, path: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let host = s.url("").trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&host).unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// The value of the series `series` (name with labels, exactly as exposed).
pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

pub(crate) fn scrape(url: &str) -> String {
    let (status, headers, body) = send("GET", url, None, &[], b"");
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    String::from_utf8(body).unwrap()
}

#[test]
fn metrics_count_a_real_run_and_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let up = token(d, Role::Uploader);
    let reviewer = token(d, Role::Reviewer);
    let s = Server::start(
        d,
        &[
            ("VCW__SERVER__REAPER_SECONDS", "0.2"),
            ("VCW__LOG__FORMAT", "json"),
            ("VCW__LOG__LEVEL", "info"),
        ],
    );
    let id = "3e7c1c50000000000000000000000001";
    assert_eq!(
        put_video(&s, &up, id, &asset("samples/bikes.mp4"), &[]),
        202
    );
    assert_eq!(state(&wait_for(&s, &up, id, 120, is_final)), "done");
    let segment = s.url(&format!("/v1/videos/{id}/segments/0.m4s"));
    for _ in 0..2 {
        assert_eq!(send("GET", &segment, Some(&reviewer), &[], b"").0, 200);
    }
    // A stored segment altered behind vcw's back is refused, and counted.
    let stored = crate::serve::stored_files(&s.dir, &format!("videos/{id}"));
    let victim = stored.iter().find(|f| f.ends_with("1.m4s.sealed")).unwrap();
    let path = s.dir.join("objects").join(victim);
    let mut sealed = std::fs::read(&path).unwrap();
    sealed[300] ^= 1;
    std::fs::write(&path, sealed).unwrap();
    let altered = s.url(&format!("/v1/videos/{id}/segments/1.m4s"));
    let (status, _, body) = send("GET", &altered, Some(&reviewer), &[], b"");
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
    assert!(
        !String::from_utf8_lossy(&body).contains("chunk"),
        "no internals"
    );

    // Clients choose the method: made-up ones share one label instead of adding series.
    for made_up in ["XMADEUP1", "XMADEUP2"] {
        assert_eq!(raw_status(&s, made_up, "/healthz"), 405);
    }

    // Catalog figures and cache counters are refreshed every 5 s.
    let url = s.url("/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = scrape(&url);
        let hit = value(&text, r#"vcw_cache_requests_total{result="hit"}"#);
        if value(&text, r#"vcw_jobs{state="done"}"#) == Some(1.0) && hit >= Some(1.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "never refreshed:\n{text}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let (code, said) = promtool(&text);
    assert_eq!(code, 0, "promtool: {said}\n{text}");
    assert!(said.trim().is_empty(), "promtool lint: {said}");

    let at_least = |series: &str, min: f64| {
        let v = value(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(v >= min, "{series} = {v}, expected at least {min}");
    };
    at_least(r#"vcw_jobs_finished_total{state="done"}"#, 1.0);
    at_least(r#"vcw_job_duration_seconds_count{state="done"}"#, 1.0);
    at_least("vcw_frames_sampled_total", 5.0);
    for model in ["open_nsfw", "nudenet_320n", "centerface", "faceapi_age"] {
        at_least(
            &format!(r#"vcw_inference_duration_seconds_count{{model="{model}"}}"#),
            1.0,
        );
    }
    at_least("vcw_sealed_bytes_total", 100_000.0);
    at_least("vcw_opened_bytes_total", 100_000.0);
    at_least(r#"vcw_cache_requests_total{result="miss"}"#, 1.0);
    at_least("vcw_cache_bytes", 1.0);
    at_least(r#"vcw_reaper_actions_total{action="passes"}"#, 1.0);
    at_least(
        r#"vcw_http_requests_total{method="PUT",route="/v1/videos/{id}",status="202"}"#,
        1.0,
    );
    at_least(
        r#"vcw_http_requests_total{method="GET",route="/v1/videos/{id}/segments/{n}",status="200"}"#,
        2.0,
    );
    at_least(
        r#"vcw_integrity_failures_total{kind="authentication"}"#,
        1.0,
    );
    assert!(value(&text, "vcw_outbox_lag_seconds").is_some());
    at_least(
        r#"vcw_http_requests_total{method="OTHER",route="/healthz",status="405"}"#,
        2.0,
    );
    assert!(
        !text.contains("XMADEUP"),
        "a client's method is not a label"
    );
    // Route templates only: no video id (nor anything else of a person) in a label.
    assert!(!text.contains(id), "a video id in the metrics");

    // `[log] format = "json"`: one object per line, with the request's or the job's span.
    let log = std::fs::read_to_string(d.join("server.log")).unwrap();
    let lines: Vec<serde_json::Value> = (log.lines().filter(|l| l.starts_with('{')))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let in_span = |name: &str, field: &str, value: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .any(|l| l["span"]["name"] == name && l["span"][field].as_str().is_some_and(value))
    };
    assert!(in_span("job", "video", &|v| v == id), "{log}");
    assert!(in_span("request", "id", &|v| v.len() == 32), "{log}");
}
