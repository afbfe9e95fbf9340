//! `FsStore` against a real temp directory.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use tokio::io::AsyncReadExt as _;

use super::readers::{Generator, sha256_of};
use vcw::storage::{BlobStore, FsStore, StorageError};

const KEY: &str = "videos/0f8fad5b-d9cb-469f-a165-70867728950e/seg-00001.sealed";

fn store() -> (tempfile::TempDir, FsStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FsStore::new(dir.path().join("objects")).expect("store");
    (dir, store)
}

/// Every file name under `dir`, recursively, for "nothing else was left behind" checks.
fn all_files(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            files.extend(all_files(&entry.path()));
        } else {
            files.push(entry.path().display().to_string());
        }
    }
    files
}

async fn put_bytes(store: &FsStore, key: &str, data: &[u8]) -> u64 {
    store.put(key, &mut &data[..]).await.expect("put")
}

async fn get_bytes(store: &FsStore, key: &str) -> Vec<u8> {
    let mut data = Vec::new();
    store
        .get(key)
        .await
        .expect("get")
        .read_to_end(&mut data)
        .await
        .expect("read");
    data
}

#[tokio::test]
async fn round_trip() {
    let (_dir, store) = store();
    assert_eq!(put_bytes(&store, KEY, b"sealed bytes").await, 12);
    assert_eq!(get_bytes(&store, KEY).await, b"sealed bytes");
    assert_eq!(store.len(KEY).await.unwrap(), 12);
    assert!(store.exists(KEY).await.unwrap());

    // Replacing keeps the key and swaps the content whole.
    put_bytes(&store, KEY, b"v2").await;
    assert_eq!(get_bytes(&store, KEY).await, b"v2");

    // Empty objects are objects too.
    put_bytes(&store, "empty", b"").await;
    assert_eq!(store.len("empty").await.unwrap(), 0);
    assert!(get_bytes(&store, "empty").await.is_empty());
}

#[tokio::test]
async fn streams_large_object() {
    let (_dir, store) = store();
    let len = 20 << 20;
    let written = store.put(KEY, &mut Generator::new(len)).await.unwrap();
    assert_eq!(written, len);
    let stored = sha256_of(store.get(KEY).await.unwrap()).await;
    assert_eq!(stored, sha256_of(Generator::new(len)).await);
}

#[tokio::test]
async fn failed_put_leaves_nothing() {
    let (_dir, store) = store();

    let err = store
        .put(KEY, &mut Generator::failing(4 << 20, 3 << 20))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Io {
                op: "read input",
                ..
            }
        ),
        "{err}"
    );
    assert!(!store.exists(KEY).await.unwrap());
    assert!(all_files(store.root()).is_empty(), "temp file left behind");

    // A failed replacement keeps the previous object intact.
    put_bytes(&store, KEY, b"old").await;
    store
        .put(KEY, &mut Generator::failing(100, 50))
        .await
        .unwrap_err();
    assert_eq!(get_bytes(&store, KEY).await, b"old");
    assert_eq!(all_files(store.root()).len(), 1);
}

#[tokio::test]
async fn cancelled_put_leaves_nothing() {
    let (_dir, store) = store();
    // The writer half stays open, so the upload blocks after the first bytes.
    let (mut reader, mut writer) = tokio::io::duplex(1024);
    tokio::io::AsyncWriteExt::write_all(&mut writer, &[7u8; 1000])
        .await
        .unwrap();
    let put = store.put(KEY, &mut reader);
    let timed_out = tokio::time::timeout(Duration::from_millis(200), put).await;
    assert!(timed_out.is_err(), "put should still be waiting for input");
    assert!(!store.exists(KEY).await.unwrap());
    assert!(all_files(store.root()).is_empty(), "temp file left behind");
}

#[tokio::test]
async fn crash_leftovers_are_hidden_and_swept() {
    let (_dir, store) = store();
    put_bytes(&store, KEY, b"data").await;
    // What a crash mid-put leaves: a temp file beside the target.
    let object = store.root().join(KEY);
    let stale = object.with_file_name(".tmp-12345-1-0");
    std::fs::write(&stale, b"partial").unwrap();

    assert_eq!(store.list("").await.unwrap(), vec![KEY.to_owned()]);
    // Too young to sweep with a grace period (another process may still be writing it)...
    let grace = Duration::from_secs(3600);
    assert_eq!(store.sweep_incomplete(grace).await.unwrap(), 0);
    assert!(stale.exists());
    // ...swept once it is past it.
    assert_eq!(store.sweep_incomplete(Duration::ZERO).await.unwrap(), 1);
    assert!(!stale.exists());
    assert_eq!(get_bytes(&store, KEY).await, b"data");
}

#[tokio::test]
async fn range_reads() {
    let (_dir, store) = store();
    let len = 100_000;
    store.put(KEY, &mut Generator::new(len)).await.unwrap();

    for (offset, n) in [
        (0, 1),
        (0, len),
        (4096, 65536),
        (len - 1, 1),
        (len, 0),
        (7, 0),
    ] {
        let got = store.get_range(KEY, offset, n).await.unwrap();
        assert_eq!(got, Generator::expected(offset, n), "range {offset}+{n}");
    }
    for (offset, n) in [(len - 1, 2), (len, 1), (len + 1, 0), (u64::MAX, 2)] {
        let err = store.get_range(KEY, offset, n).await.unwrap_err();
        assert!(
            matches!(err, StorageError::RangeOutOfBounds { size, .. } if size == len),
            "range {offset}+{n}: {err}"
        );
    }
    assert!(matches!(
        store.get_range("missing", 0, 1).await,
        Err(StorageError::NotFound { .. })
    ));
}

#[tokio::test]
async fn bad_keys_are_rejected() {
    let (dir, store) = store();
    for key in [
        "../escape",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "a b",
        "",
        "a/.tmp-1",
    ] {
        let is_invalid =
            |r: Result<(), StorageError>| matches!(r, Err(StorageError::InvalidKey { .. }));
        assert!(
            is_invalid(store.put(key, &mut &b"x"[..]).await.map(drop)),
            "{key:?}"
        );
        assert!(is_invalid(store.get(key).await.map(drop)), "{key:?}");
        assert!(
            is_invalid(store.get_range(key, 0, 1).await.map(drop)),
            "{key:?}"
        );
        assert!(is_invalid(store.len(key).await.map(drop)), "{key:?}");
        assert!(is_invalid(store.delete(key).await), "{key:?}");
        assert!(is_invalid(store.exists(key).await.map(drop)), "{key:?}");
    }
    assert!(matches!(
        store.list("../").await,
        Err(StorageError::InvalidKey { .. })
    ));
    // Nothing was written anywhere, not even the root.
    assert_eq!(all_files(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn delete_is_idempotent() {
    let (_dir, store) = store();
    put_bytes(&store, KEY, b"x").await;
    store.delete(KEY).await.unwrap();
    assert!(!store.exists(KEY).await.unwrap());
    store.delete(KEY).await.unwrap();
    store.delete("never/existed").await.unwrap();
    assert!(matches!(
        store.get(KEY).await.map(drop),
        Err(StorageError::NotFound { .. })
    ));
}

#[tokio::test]
async fn files_and_dirs_are_private() {
    let (_dir, store) = store();
    put_bytes(&store, KEY, b"x").await;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let object = store.root().join(KEY);
    assert_eq!(mode(&object), 0o600);
    let mut dir = object.parent().unwrap();
    while dir != store.root().parent().unwrap() {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        dir = dir.parent().unwrap();
    }
}

#[tokio::test]
async fn list_by_prefix() {
    let (_dir, store) = store();
    assert!(store.list("").await.unwrap().is_empty(), "missing root");
    for key in [
        "videos/a/seg-1",
        "videos/a/seg-2",
        "videos/ab/seg-1",
        "videos/b/x",
        "top",
    ] {
        put_bytes(&store, key, b"x").await;
    }
    let list = |prefix: &'static str| {
        let store = store.clone();
        async move { store.list(prefix).await.unwrap() }
    };
    assert_eq!(list("").await.len(), 5);
    assert_eq!(
        list("videos/a/").await,
        ["videos/a/seg-1", "videos/a/seg-2"]
    );
    assert_eq!(
        list("videos/a").await,
        ["videos/a/seg-1", "videos/a/seg-2", "videos/ab/seg-1"]
    );
    assert_eq!(list("videos/a/seg-2").await, ["videos/a/seg-2"]);
    assert!(list("nothing/").await.is_empty());
    // A directory is not an object.
    assert!(!store.exists("videos").await.unwrap());
    assert!(matches!(
        store.len("videos/a").await,
        Err(StorageError::NotFound { .. })
    ));
}

/// `keys` streams what `list` returns, with each directory's keys together, and keeps
/// going while the caller deletes what it was given (as the orphan sweep does).
#[tokio::test]
async fn keys_stream_by_directory_while_the_caller_deletes() {
    let (_dir, store) = store();
    let mut expected = Vec::new();
    for video in 0..40 {
        for seg in 0..3 {
            let key = format!("videos/v{video:02}/a1/seg-{seg}");
            put_bytes(&store, &key, b"x").await;
            expected.push(key);
        }
    }
    put_bytes(&store, "staging/part", b"x").await;
    // A crash's temp file is not a key.
    std::fs::write(store.root().join("videos/v00/a1/.tmp-1-2-3"), b"partial").unwrap();
    assert_eq!(store.list("videos/").await.unwrap(), expected);

    let mut seen = Vec::new();
    let mut keys = store.keys("videos/");
    while let Some(key) = keys.try_next().await.unwrap() {
        store.delete(&key).await.unwrap();
        seen.push(key);
    }
    // Every key once, and a directory's keys never interrupted by another directory's.
    let dir_of = |key: &str| key.rsplit_once('/').unwrap().0.to_owned();
    let mut dirs: Vec<String> = seen.iter().map(|k| dir_of(k)).collect();
    dirs.dedup();
    assert_eq!(dirs.len(), 40, "{seen:?}");
    seen.sort();
    assert_eq!(seen, expected);
    assert!(store.list("videos/").await.unwrap().is_empty());
    assert_eq!(store.list("").await.unwrap(), ["staging/part"]);

    // A caller that stops early just drops the stream.
    let first = store.keys("").try_next().await.unwrap();
    assert_eq!(first.as_deref(), Some("staging/part"));
    let bad = store.keys("../").try_next().await;
    assert!(
        matches!(bad, Err(StorageError::InvalidKey { .. })),
        "{bad:?}"
    );
}

#[tokio::test]
async fn describe_names_the_root() {
    let (_dir, store) = store();
    assert_eq!(store.describe(), format!("fs:{}", store.root().display()));
    assert!(store.root().is_absolute());
}

/// A staged file becomes the object: moved when it is on the store's filesystem (the
/// staging file is gone, nothing is copied), copied from another filesystem (/dev/shm is
/// tmpfs); either way it replaces an existing object whole and leaves no staging file.
#[tokio::test]
async fn put_file_moves_or_copies_a_staged_file() {
    let (dir, store) = store();
    put_bytes(&store, KEY, b"old").await;
    for staging in [dir.path().to_path_buf(), "/dev/shm".into()] {
        let mut staged = tempfile::NamedTempFile::new_in(&staging).unwrap();
        std::io::Write::write_all(&mut staged, b"sealed upload").unwrap();
        let staged = staged.into_temp_path();
        let staged_at = staged.to_path_buf();
        assert_eq!(store.put_file(KEY, staged).await.unwrap(), 13);
        assert_eq!(get_bytes(&store, KEY).await, b"sealed upload");
        assert!(!staged_at.exists(), "{}", staged_at.display());
        let mode = std::fs::metadata(store.root().join(KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        put_bytes(&store, KEY, b"old").await;
    }
    assert_eq!(all_files(store.root()).len(), 1);
}
