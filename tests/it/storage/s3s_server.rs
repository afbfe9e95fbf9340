//! A real S3-compatible server (`s3s-fs`) for the S3 tests, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vcw::storage::{S3Config, S3Store};

const ACCESS_KEY: &str = "vcw-test-access";
const SECRET_KEY: &str = "vcw-test-secret";
const INSTALL_HINT: &str = "s3s-fs is required for the S3 tests: run scripts/install-s3s-fs \
     (cargo install s3s-fs@0.14.1 --features binary -j1), or set S3S_FS_BIN";

/// One `s3s-fs` process serving a fresh temp directory on a free loopback port.
pub struct S3sServer {
    child: Child,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl S3sServer {
    /// Starts the server and waits until it accepts connections.
    ///
    /// Panics (fails the test, never skips it) when `s3s-fs` is not installed.
    pub async fn start() -> Self {
        let binary = find_binary().unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        let log = std::fs::File::create(dir.path().join("s3s-fs.log")).expect("log file");

        // Ask the OS for a free port; the tiny window before s3s-fs binds it is acceptable
        // for tests.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start {}: {err}; {INSTALL_HINT}", binary.display())
            });
        let mut server = S3sServer {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            dir,
        };
        server.wait_ready(port).await;
        server
    }

    async fn wait_ready(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("s3s-fs exited with {status}: {}", self.log());
            }
            if Instant::now() > deadline {
                panic!("s3s-fs did not listen on port {port}: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("s3s-fs.log")).unwrap_or_default()
    }

    /// Parts of multipart uploads that were neither completed nor aborted. Relies on
    /// s3s-fs's on-disk layout (`.upload_id-<id>.part-<n>` in its root), because it does
    /// not implement `ListMultipartUploads`.
    pub fn pending_parts(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("data"))
            .expect("read s3s-fs root")
            .filter_map(Result::ok)
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".upload_id-")
            })
            .count()
    }

    pub fn config(&self) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".to_owned(),
            access_key: Some(ACCESS_KEY.to_owned()),
            secret_key: Some(vcw::secret::Secret::new(SECRET_KEY)),
            path_style: true,
        }
    }

    /// A store on `bucket` (created if needed) under `prefix`.
    pub async fn store(&self, bucket: &str, prefix: &str) -> S3Store {
        let store = S3Store::new(bucket, prefix, &self.config()).expect("store");
        store.ensure_bucket().await.expect("create bucket");
        store
    }
}

impl Drop for S3sServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$S3S_FS_BIN`, else `s3s-fs` on `PATH`, else in Cargo's bin dir (where the install
/// script puts it, which is not always on `PATH` in CI shells).
fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("S3S_FS_BIN") {
        return Some(PathBuf::from(path));
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|cargo_home| cargo_home.join("bin"));
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("s3s-fs"))
        .find(|candidate| candidate.is_file())
}
