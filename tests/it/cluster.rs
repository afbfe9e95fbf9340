//! Cluster mode against real servers started here on free loopback ports: nats-server
//! with JetStream, PostgreSQL 15 and s3s-fs. One `vcw api` and two `vcw worker`
//! processes: a tus upload goes through to playable segments, a job published straight
//! on JetStream by another producer runs, and a worker killed with SIGKILL mid-job has
//! its job finished exactly once by the other.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::serve::{Server, consent, is_final, send, state, token_with, tus_upload, wait_for};
use crate::storage::s3s_server::S3sServer;
use crate::util::{asset, vcw};
use vcw::api::Role;
use vcw::storage::BlobStore;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn wait_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// nats-server with JetStream in a temp dir.
pub(crate) struct Nats {
    child: Child,
    pub(crate) url: String,
    port: u16,
    dir: PathBuf,
}

impl Nats {
    pub(crate) fn start(dir: &Path) -> Nats {
        let port = free_port();
        let child = Nats::spawn(dir, port);
        Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn spawn(dir: &Path, port: u16) -> Child {
        let log = dir.join("nats.log");
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("jetstream"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("nats-server is installed (make setup)");
        wait_port(port, "nats-server", &log);
        child
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts again on the same port with the same JetStream store.
    fn restart(&mut self) {
        self.child = Nats::spawn(&self.dir, self.port);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway PostgreSQL cluster (initdb + pg_ctl), run as the `postgres` user when the
/// tests run as root (PostgreSQL refuses root).
pub(crate) struct Postgres {
    data: PathBuf,
    pub(crate) url: String,
    /// `pg_ctl -o` options and log file, to start it again.
    opts: String,
    log: PathBuf,
}

fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (make setup)")
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions.pop().expect("PostgreSQL server binaries")
}

fn as_postgres(bin: &Path) -> Command {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc_geteuid() } == 0;
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

impl Postgres {
    pub(crate) fn start(dir: &Path) -> Postgres {
        use std::os::unix::fs::PermissionsExt;
        let base = dir.join("pg");
        std::fs::create_dir(&base).unwrap();
        // The postgres user must reach its directory through the temp dir.
        for d in [dir, base.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // SAFETY: as above.
        if unsafe { libc_geteuid() } == 0 {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&base)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown postgres");
        }
        let data = base.join("data");
        let out = as_postgres(&pg_bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "vcw", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let opts = format!("-p {port} -k {} -h 127.0.0.1 -c fsync=off", base.display());
        let out = as_postgres(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(base.join("pg.log"))
            .args(["-w", "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(base.join("pg.log")).unwrap_or_default()
        );
        Postgres {
            data,
            url: format!("postgres://vcw@127.0.0.1:{port}/postgres"),
            opts,
            log: base.join("pg.log"),
        }
    }

    /// `pg_ctl stop -m immediate`: the server goes away at once.
    fn stop(&self) {
        let out = as_postgres(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop");
    }

    fn start_again(&self) {
        let out = as_postgres(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &self.opts, "-l"])
            .arg(&self.log)
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// A new keyring in `dir` (`vcw keys init`), and the local consent issuer's and the audit
/// keys beside it (cluster processes read them, never create them).
fn init_keyring(dir: &Path) -> String {
    vcw::consent::LocalIssuer::open_or_create(&dir.join("consent-issuer.pem")).unwrap();
    vcw::audit::AuditSigner::open(&dir.join("audit-signing.pem"), true).unwrap();
    let keyring = dir.join("keyring.toml");
    let out = vcw()
        .args(["keys", "init", "--keyring"])
        .arg(&keyring)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    keyring.to_str().unwrap().to_string()
}

/// The environment of every cluster process: NATS, PostgreSQL, the s3s store, the
/// keyring, and a short lease.
fn cluster_env<'a>(
    nats: &'a str,
    database: &'a str,
    store: &'a str,
    endpoint: &'a str,
    keyring: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("VCW__CLUSTER__NATS_URL", nats),
        ("VCW__CLUSTER__DATABASE_URL", database),
        ("VCW__SERVER__STORE", store),
        ("VCW__S3__ENDPOINT", endpoint),
        ("VCW__S3__REGION", "us-east-1"),
        ("VCW__S3__ACCESS_KEY", "vcw-test-access"),
        ("VCW__S3__SECRET_KEY", "vcw-test-secret"),
        ("VCW__SERVER__LEASE_SECONDS", "3"),
        ("VCW__SERVER__S3_SOURCES", r#"["s3://vcw/input/"]"#),
        ("VCW__VAULT__KEYRING", keyring),
        ("RUST_LOG", "info"),
    ]
}

#[test]
fn cluster_mode_on_nats_postgres_and_s3() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    let pg = Postgres::start(dir.path());
    let s3 = rt.block_on(S3sServer::start());
    let bucket = rt.block_on(s3.store("vcw", ""));
    let s3c = s3.config();

    let keyring = init_keyring(dir.path());
    let endpoint = s3c.endpoint.clone().unwrap();
    let env = cluster_env(&nats.url, &pg.url, "s3://vcw/cluster", &endpoint, &keyring);
    let admin = token_with(dir.path(), Role::Admin, &env);
    let uploader = token_with(dir.path(), Role::Uploader, &env);
    let api = Server::launch(
        &["api", "--listen", "127.0.0.1:0"],
        dir.path(),
        "server.log",
        &env,
    );
    let mut workers: Vec<Server> = (0..2)
        .map(|i| {
            Server::launch(
                &["worker", "--listen", "127.0.0.1:0"],
                dir.path(),
                &format!("worker-{i}.log"),
                &env,
            )
        })
        .collect();
    let (status, _, body) = send("GET", &api.url("/readyz"), None, &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // tus upload, interrupted and resumed, through JetStream to a verdict and playback.
    let clip = asset("samples/bikes.mp4");
    let first = tus_upload(
        &api,
        &uploader,
        &clip,
        &["--chunk-size", "200000", "--stop-after-chunks", "1"],
    );
    let url = first["url"].as_str().unwrap().to_string();
    let done = tus_upload(&api, &uploader, &clip, &["--resume-url", &url]);
    assert_eq!(done["complete"], true);
    let id = url.rsplit('/').next().unwrap().to_string();
    let v = wait_for(&api, &uploader, &id, 240, is_final);
    assert_eq!(state(&v), "done", "{v}");
    assert_eq!(v["verdict"], "allow");
    let (status, _, playlist) = send(
        "GET",
        &api.url(&format!("/v1/videos/{id}/playlist.m3u8")),
        Some(&admin),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    let playlist = String::from_utf8(playlist).unwrap();
    let seg = playlist
        .lines()
        .find(|l| l.starts_with("segments/"))
        .unwrap();
    // A media segment plays after the init segment (fMP4).
    let mut joined = Vec::new();
    for path in ["segments/init.mp4", seg] {
        let url = api.url(&format!("/v1/videos/{id}/{path}"));
        let (status, _, bytes) = send("GET", &url, Some(&admin), &[], b"");
        assert_eq!(status, 200, "{path}");
        joined.extend_from_slice(&bytes);
    }
    let mp4 = dir.path().join("seg.mp4");
    std::fs::write(&mp4, joined).unwrap();
    assert!(crate::util::ffprobe_duration(&mp4) > 1.0);

    // Another producer publishes a whole job on JetStream; the source is in S3.
    let publish_job = |id: &str, url: &str| {
        let job = serde_json::json!({
            "id": id,
            "source": {"s3": {"url": url}},
            "consent": consent(dir.path(), "subject-2"),
        });
        rt.block_on(async {
            let client = async_nats::connect(&nats.url).await.unwrap();
            let js = async_nats::jetstream::new(client);
            js.publish("vcw.jobs", job.to_string().into())
                .await
                .unwrap()
                .await
                .unwrap();
        });
    };
    rt.block_on(async {
        let mut file = tokio::fs::File::open(&clip).await.unwrap();
        bucket.put("input/bikes.mp4", &mut file).await.unwrap();
    });
    publish_job(
        "feed0000000000000000000000000001",
        "s3://vcw/input/bikes.mp4",
    );
    let v = wait_for(
        &api,
        &admin,
        "feed0000000000000000000000000001",
        240,
        is_final,
    );
    assert_eq!(state(&v), "done", "{v}");

    // A queue-driven job never passed the API's check: the worker refuses vcw's own
    // store as a source, permanently (no retry).
    publish_job(
        "feed0000000000000000000000000002",
        "s3://vcw/cluster/videos/feed0000000000000000000000000001/a1/manifest.json.sealed",
    );
    let v = wait_for(
        &api,
        &admin,
        "feed0000000000000000000000000002",
        120,
        is_final,
    );
    assert_eq!(
        (state(&v), v["attempts"].as_i64()),
        ("failed", Some(1)),
        "{v}"
    );
    assert!(v["error"].as_str().unwrap().contains("own store"), "{v}");

    // SIGKILL the worker that holds a long job; the other one finishes it, once.
    let long = "c1a5e000000000000000000000000002";
    let (status, ..) = send(
        "PUT",
        &api.url(&format!("/v1/videos/{long}")),
        Some(&uploader),
        &[("vcw-consent", &consent(dir.path(), "subject-3"))],
        &std::fs::read(asset("samples/generated/longgop.mp4")).unwrap(),
    );
    assert_eq!(status, 202);
    wait_for(&api, &uploader, long, 120, |v| {
        state(v) == "running" && v["progress"].as_f64().unwrap_or(0.0) > 0.05
    });
    // Kill whichever worker logged the job's start.
    let started = |i: usize| {
        std::fs::read_to_string(dir.path().join(format!("worker-{i}.log")))
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(long) && l.contains("job started"))
    };
    let victim = (0..2)
        .find(|i| started(*i))
        .expect("a worker logged the job's start");
    workers[victim].kill();
    let v = wait_for(&api, &uploader, long, 300, is_final);
    assert_eq!(state(&v), "done", "{v}");
    assert_eq!(v["attempts"], 2, "{v}");

    // The dashboard's figures, from PostgreSQL: the finished jobs, their latency, the
    // api node's heartbeat, and the retried job's two attempts among the done ones.
    let (status, _, body) = send("GET", &api.url("/v1/dashboard"), Some(&admin), &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let o: Value = serde_json::from_slice(&body).unwrap();
    assert!(o["jobs"]["done"].as_i64().unwrap() >= 2, "{o}");
    let finished: i64 = (o["throughput"]["buckets"].as_array().unwrap().iter())
        .map(|b| b["done"].as_i64().unwrap())
        .sum();
    assert_eq!(finished, o["jobs"]["done"].as_i64().unwrap(), "{o}");
    assert!(o["latency_ms"]["p50"].as_i64().unwrap() > 0, "{o}");
    assert!(
        !o["workers"]["api_nodes"].as_array().unwrap().is_empty(),
        "{o}"
    );
    assert_eq!(
        o["verdicts"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(Value::as_i64)
            .sum::<i64>(),
        finished,
        "{o}"
    );

    // Exactly the manifest's objects in S3, one catalog row each; no staging left.
    let (keys, staging) = rt.block_on(async {
        (
            bucket
                .list(&format!("cluster/videos/{long}/"))
                .await
                .unwrap(),
            bucket.list("cluster/staging/").await.unwrap(),
        )
    });
    let (status, _, playlist) = send(
        "GET",
        &api.url(&format!("/v1/videos/{long}/playlist.m3u8")),
        Some(&admin),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    let segments = String::from_utf8(playlist)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("segments/"))
        .count();
    // Segments, the init segment, the playlist and the manifest.
    assert_eq!(keys.len(), segments + 3, "{keys:?}");
    assert!(staging.is_empty(), "{staging:?}");
    let rows = rt.block_on(async {
        let catalog = vcw::catalog::Catalog::connect(&pg.url).await.unwrap();
        catalog
            .objects_at(&format!("s3://vcw/cluster/videos/{long}/"))
            .await
            .unwrap()
    });
    assert_eq!(rows.len(), keys.len(), "no orphan catalog rows");
    // No sealed object holds the clip in the clear.
    let raw = std::fs::read(asset("samples/generated/longgop.mp4")).unwrap();
    let needle = &raw[raw.len() / 2..raw.len() / 2 + 64];
    for key in &keys {
        let mut body = Vec::new();
        rt.block_on(async {
            let mut r = bucket.get(key).await.unwrap();
            r.read_to_end(&mut body).await.unwrap();
        });
        assert!(
            !body.windows(64).any(|w| w == needle),
            "{key} holds plaintext"
        );
    }

    // `vcw keys` and `vcw audit` act on the cluster's catalog (PostgreSQL).
    let admin_cli = |args: &[&str]| {
        let out = vcw().args(args).envs(env.iter().copied()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let shred = admin_cli(&["keys", "shred", "--subject", "subject-3"]);
    let report: serde_json::Value = serde_json::from_str(&shred).unwrap();
    assert_eq!(report["subject_key_destroyed"], true, "{report}");
    assert!(
        report["objects"].as_array().unwrap().len() >= keys.len(),
        "{report}"
    );
    let (status, ..) = send(
        "GET",
        &api.url(&format!("/v1/videos/{long}/playlist.m3u8")),
        Some(&admin),
        &[],
        b"",
    );
    assert_eq!(status, 410, "shredded: nothing decrypts any more");
    let rotated = admin_cli(&["keys", "rotate"]);
    assert!(rotated.starts_with("KEK version 2 is current"), "{rotated}");
    // The cluster's audit log, signed and verified from the command line.
    admin_cli(&["audit", "checkpoint"]);
    let verified = admin_cli(&["audit", "verify"]);
    assert!(verified.contains("\"records\""), "{verified}");
}

/// Outages in cluster mode: NATS killed with SIGKILL while an upload arrives (accepted,
/// then published and done once NATS is back); PostgreSQL stopped immediately (uploads
/// refused with 503 and Retry-After, `/readyz` names the catalog; accepted again once it
/// is back). Nothing accepted is lost.
#[test]
fn cluster_survives_nats_and_postgresql_outages() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(dir.path());
    let pg = Postgres::start(dir.path());
    let s3 = rt.block_on(S3sServer::start());
    rt.block_on(s3.store("vcw", ""));
    let s3c = s3.config();
    let keyring = init_keyring(dir.path());
    let endpoint = s3c.endpoint.clone().unwrap();
    let nats_url = nats.url.clone();
    let env = cluster_env(&nats_url, &pg.url, "s3://vcw/outage", &endpoint, &keyring);
    let admin = token_with(dir.path(), Role::Admin, &env);
    let api = Server::launch(
        &["api", "--listen", "127.0.0.1:0"],
        dir.path(),
        "server.log",
        &env,
    );
    let _worker = Server::launch(
        &["worker", "--listen", "127.0.0.1:0"],
        dir.path(),
        "worker-0.log",
        &env,
    );
    let clip = std::fs::read(asset("samples/carphone_pristine.mp4")).unwrap();
    let outage_consent = consent(dir.path(), "outage-subject");
    let put = |id: &str| {
        send(
            "PUT",
            &api.url(&format!("/v1/videos/{id}")),
            Some(&admin),
            &[("vcw-consent", &outage_consent)],
            &clip,
        )
    };

    // NATS dies: the upload is still accepted, and runs once NATS is back.
    nats.kill();
    let during_nats = "0a7a9e00000000000000000000000001";
    let (status, _, body) = put(during_nats);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = send("GET", &api.url("/readyz"), None, &[], b"");
    assert_eq!(status, 503);
    let ready: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ready["catalog"], "ok");
    assert_eq!(
        ready["queue"], "unavailable",
        "names it, never why: {ready}"
    );
    nats.restart();
    let v = wait_for(&api, &admin, during_nats, 240, is_final);
    assert_eq!(state(&v), "done", "{v}");

    // PostgreSQL stops: uploads are refused with 503 + Retry-After, nothing is half-stored.
    pg.stop();
    let during_pg = "0a7a9e00000000000000000000000002";
    let (status, headers, body) = put(during_pg);
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains_key("retry-after"));
    assert!(
        !String::from_utf8_lossy(&body).contains("postgres"),
        "no internals"
    );
    let (status, _, body) = send("GET", &api.url("/readyz"), None, &[], b"");
    assert_eq!(status, 503);
    let ready: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ready["catalog"], "unavailable", "{ready}");
    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (status, ..) = put(during_pg);
        if status != 503 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(status, 202);
    let v = wait_for(&api, &admin, during_pg, 240, is_final);
    assert_eq!(state(&v), "done", "{v}");
}

/// Revocation on three `vcw api` nodes sharing NATS, PostgreSQL and S3, while readers on
/// every node fetch the subject's segment as fast as they can: from the moment the
/// revocation is acknowledged (the 200 of `DELETE …/consent` on one node), no read on
/// any node returns plaintext. Prints how long after the acknowledgement each node's
/// last 200 came (negative: before it), and the p50/p99 of the first 403 per reader.
#[test]
fn revocation_takes_effect_on_every_node_at_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(dir.path());
    let pg = Postgres::start(dir.path());
    let s3 = rt.block_on(S3sServer::start());
    let s3c = s3.config();
    let keyring = init_keyring(dir.path());
    let endpoint = s3c.endpoint.clone().unwrap();
    let mut env = cluster_env(&nats.url, &pg.url, "s3://vcw/revoke", &endpoint, &keyring);
    env.push(("VCW__SERVER__RATE_PER_SECOND", "100000"));
    env.push(("VCW__SERVER__RATE_BURST", "100000"));
    let admin = token_with(dir.path(), Role::Admin, &env);
    let uploader = token_with(dir.path(), Role::Uploader, &env);
    let nodes: Vec<Server> = (0..3)
        .map(|i| {
            let args = ["api", "--listen", "127.0.0.1:0"];
            Server::launch(&args, dir.path(), &format!("api-{i}.log"), &env)
        })
        .collect();
    let worker = Server::launch(
        &["worker", "--listen", "127.0.0.1:0"],
        dir.path(),
        "worker.log",
        &env,
    );
    let id = "4e70c000000000000000000000000001";
    let erin = consent(dir.path(), "erin");
    let (status, ..) = send(
        "PUT",
        &nodes[0].url(&format!("/v1/videos/{id}")),
        Some(&uploader),
        &[("vcw-consent", &erin)],
        &std::fs::read(asset("samples/bikes.mp4")).unwrap(),
    );
    assert_eq!(status, 202);
    assert_eq!(
        state(&wait_for(&nodes[0], &uploader, id, 240, is_final)),
        "done"
    );
    let segment = format!("/v1/videos/{id}/segments/0.m4s");
    for node in &nodes {
        assert_eq!(
            send("GET", &node.url(&segment), Some(&admin), &[], b"").0,
            200
        );
    }

    // Two readers per node, each logging (time, status) of every read.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = std::time::Instant::now();
    let readers: Vec<_> = nodes
        .iter()
        .flat_map(|n| [n.url(&segment), n.url(&segment)])
        .map(|url| {
            let (stop, admin) = (stop.clone(), admin.clone());
            std::thread::spawn(move || {
                let mut log = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let sent = start.elapsed();
                    let (status, ..) = send("GET", &url, Some(&admin), &[], b"");
                    log.push((sent, start.elapsed(), status));
                }
                log
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let revoke = nodes[1].url("/v1/subjects/erin/consent");
    let (status, _, body) = send("DELETE", &revoke, Some(&admin), &[], b"");
    let acknowledged = start.elapsed();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["fanout"]["nodes"], 3, "{answer}");
    assert_eq!(
        answer["fanout"]["acknowledged"].as_array().unwrap().len(),
        3,
        "every node evicted and said so: {answer}"
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let logs: Vec<Vec<(Duration, Duration, u16)>> =
        readers.into_iter().map(|r| r.join().unwrap()).collect();

    let mut first_refusals = Vec::new();
    for (reader, log) in logs.iter().enumerate() {
        assert!(log.len() > 5, "reader {reader} made {} reads", log.len());
        // Any read sent after the acknowledgement is refused: no plaintext.
        for (sent, _, status) in log {
            assert!(
                *sent < acknowledged || *status == 403,
                "reader {reader} (node {}): {status} for a read sent {:?} after the acknowledgement",
                reader / 2,
                *sent - acknowledged
            );
        }
        if let Some((_, done, _)) = log.iter().find(|(_, _, s)| *s == 403) {
            first_refusals.push(done.as_secs_f64() - acknowledged.as_secs_f64());
        }
    }
    assert_eq!(first_refusals.len(), logs.len(), "every reader was refused");
    first_refusals.sort_by(f64::total_cmp);
    let pct = |p: f64| first_refusals[((first_refusals.len() - 1) as f64 * p).round() as usize];
    println!(
        "revocation: first 403 per reader after the acknowledgement: p50 {:.1} ms, p99 {:.1} ms",
        pct(0.5) * 1000.0,
        pct(0.99) * 1000.0
    );

    // A worker serves liveness and metrics: its jobs, frames and seals.
    assert_eq!(send("GET", &worker.url("/healthz"), None, &[], b"").0, 200);
    let text = crate::metrics::scrape(&worker.url("/metrics"));
    let (code, said) = crate::metrics::promtool(&text);
    assert_eq!(code, 0, "{said}");
    let done = r#"vcw_jobs_finished_total{state="done"}"#;
    assert_eq!(crate::metrics::value(&text, done), Some(1.0), "{text}");
    assert!(crate::metrics::value(&text, "vcw_frames_sampled_total") > Some(0.0));

    // The fan-out itself: announced by each node in turn, acknowledged by all three.
    let mut fanout_ms = Vec::new();
    for i in 0..60 {
        let url = nodes[i % 3].url(&format!("/v1/subjects/fanout-{i}/consent"));
        let (status, _, body) = send("DELETE", &url, Some(&admin), &[], b"");
        assert_eq!(status, 200);
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let fanout = &answer["fanout"];
        assert_eq!(
            fanout["acknowledged"].as_array().unwrap().len(),
            3,
            "{answer}"
        );
        fanout_ms.push(fanout["ms"].as_f64().unwrap());
    }
    fanout_ms.sort_by(f64::total_cmp);
    let at = |p: f64| fanout_ms[((fanout_ms.len() - 1) as f64 * p).round() as usize];
    println!(
        "revocation fan-out, acknowledged by 3 of 3 nodes: p50 {:.2} ms, p99 {:.2} ms",
        at(0.5),
        at(0.99)
    );
    let text = crate::metrics::scrape(&nodes[0].url("/metrics"));
    let count = "vcw_revocation_fanout_duration_seconds_count";
    assert_eq!(crate::metrics::value(&text, count), Some(20.0), "{text}");

    // A node that loses the channel turns its cache off until it is back and has read
    // the ledger (fail closed); it says so in its log.
    let count = |node: usize, text: &str| {
        let log = std::fs::read_to_string(dir.path().join(format!("api-{node}.log"))).unwrap();
        log.matches(text).count()
    };
    let resumed: Vec<usize> = (0..3).map(|n| count(n, "cache on")).collect();
    nats.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (0..3).any(|n| count(n, "fan-out lost: cache off") == 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "a node did not notice"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    nats.restart();
    while (0..3).any(|n| count(n, "cache on") <= resumed[n]) {
        assert!(
            std::time::Instant::now() < deadline,
            "a node did not resume"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = nodes[2].url("/v1/subjects/after-restart/consent");
    let (_, _, body) = send("DELETE", &url, Some(&admin), &[], b"");
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        answer["fanout"]["acknowledged"].as_array().unwrap().len(),
        3,
        "{answer}"
    );
}
