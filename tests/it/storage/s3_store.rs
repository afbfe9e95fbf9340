//! `S3Store` against a real `s3s-fs` server.

use futures_util::TryStreamExt as _;
use tokio::io::AsyncReadExt as _;

use super::readers::{Generator, sha256_of};
use super::s3s_server::S3sServer;
use vcw::storage::{BlobStore, S3Config, S3Store, StorageError};

const KEY: &str = "videos/0f8fad5b-d9cb-469f-a165-70867728950e/seg-00001.sealed";

async fn get_bytes(store: &S3Store, key: &str) -> Vec<u8> {
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
async fn small_objects_list_and_delete() {
    let server = S3sServer::start().await;
    let store = server.store("vcw-small", "tenant-1").await;
    assert_eq!(store.describe(), "s3://vcw-small/tenant-1");

    assert_eq!(store.put(KEY, &mut &b"sealed bytes"[..]).await.unwrap(), 12);
    assert_eq!(get_bytes(&store, KEY).await, b"sealed bytes");
    assert_eq!(store.len(KEY).await.unwrap(), 12);
    assert!(store.exists(KEY).await.unwrap());

    store.put(KEY, &mut &b"v2"[..]).await.unwrap();
    assert_eq!(get_bytes(&store, KEY).await, b"v2");
    store.put("empty", &mut &b""[..]).await.unwrap();
    assert_eq!(store.len("empty").await.unwrap(), 0);

    for key in ["videos/a/seg-1", "videos/a/seg-2", "videos/ab/seg-1"] {
        store.put(key, &mut &b"x"[..]).await.unwrap();
    }
    assert_eq!(
        store.list("videos/a/").await.unwrap(),
        ["videos/a/seg-1", "videos/a/seg-2"]
    );
    assert_eq!(store.list("videos/a").await.unwrap().len(), 3);
    assert_eq!(store.list("").await.unwrap().len(), 5);

    // The URI prefix isolates stores sharing a bucket.
    let other = server.store("vcw-small", "tenant-2").await;
    assert!(other.list("").await.unwrap().is_empty());
    assert!(!other.exists(KEY).await.unwrap());

    store.delete(KEY).await.unwrap();
    assert!(!store.exists(KEY).await.unwrap());
    store.delete(KEY).await.unwrap();
    assert!(matches!(
        store.get(KEY).await.map(drop),
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        store.len(KEY).await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        store.put("../x", &mut &b"x"[..]).await,
        Err(StorageError::InvalidKey { .. })
    ));
}

#[tokio::test]
async fn multipart_put_streams_and_round_trips() {
    let server = S3sServer::start().await;
    let store = server.store("vcw-multipart", "").await;
    // Not a multiple of the part size, so the last part is short.
    let len = (20 << 20) + 12_345;
    assert_eq!(store.put(KEY, &mut Generator::new(len)).await.unwrap(), len);
    assert_eq!(store.len(KEY).await.unwrap(), len);
    let stored = sha256_of(store.get(KEY).await.unwrap()).await;
    assert_eq!(stored, sha256_of(Generator::new(len)).await);

    // Exactly one part goes through the multipart path too.
    let one_part = 8 << 20;
    store
        .put("one-part", &mut Generator::new(one_part))
        .await
        .unwrap();
    assert_eq!(store.len("one-part").await.unwrap(), one_part);
    assert_eq!(store.list("").await.unwrap(), ["one-part", KEY]);
}

#[tokio::test]
async fn failed_put_leaves_no_object() {
    let server = S3sServer::start().await;
    let store = server.store("vcw-abort", "p").await;
    // Fails in the third part of a multipart upload...
    let err = store
        .put(KEY, &mut Generator::failing(30 << 20, 18 << 20))
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
    assert_eq!(
        server.pending_parts(),
        0,
        "multipart upload was not aborted"
    );
    // ...and within a single-request put.
    store
        .put("small", &mut Generator::failing(1000, 10))
        .await
        .unwrap_err();
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn range_reads() {
    let server = S3sServer::start().await;
    let store = server.store("vcw-range", "r").await;
    let len = 100_000;
    store.put(KEY, &mut Generator::new(len)).await.unwrap();

    for (offset, n) in [(0, 1), (0, len), (4096, 65536), (len - 1, 1), (len, 0)] {
        let got = store.get_range(KEY, offset, n).await.unwrap();
        assert_eq!(got, Generator::expected(offset, n), "range {offset}+{n}");
    }
    for (offset, n) in [
        (len - 1, 2),
        (len, 1),
        (len + 10, 5),
        (len + 1, 0),
        (u64::MAX, 2),
    ] {
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
async fn errors_name_bucket_and_key() {
    let server = S3sServer::start().await;
    server.store("vcw-errors", "").await;
    let config = S3Config {
        secret_key: Some(vcw::secret::Secret::new("wrong-secret")),
        ..server.config()
    };
    let store = S3Store::new("vcw-errors", "", &config).unwrap();
    let err = store.put("a/b", &mut &b"x"[..]).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, StorageError::S3 { op: "put", .. }),
        "{message}"
    );
    assert!(
        message.contains("vcw-errors") && message.contains("a/b"),
        "{message}"
    );
    assert!(!message.contains("wrong-secret"), "{message}");
}

/// `keys` follows the listing across pages (S3 returns at most 1,000 keys a page) and
/// keeps going while the caller deletes what it was given, as the orphan sweep does.
#[tokio::test]
async fn keys_stream_across_pages_while_the_caller_deletes() {
    let server = S3sServer::start().await;
    let store = server.store("vcw-pages", "p").await;
    let mut expected: Vec<String> = (0..1_205).map(|n| format!("videos/{n:05}/seg")).collect();
    expected.sort();
    for key in &expected {
        store.put(key, &mut &b"x"[..]).await.unwrap();
    }
    store.put("staging/part", &mut &b"x"[..]).await.unwrap();

    let mut seen = Vec::new();
    let mut keys = store.keys("videos/");
    while let Some(key) = keys.try_next().await.unwrap() {
        store.delete(&key).await.unwrap();
        seen.push(key);
    }
    assert_eq!(seen, expected, "every key once, in order");
    assert_eq!(store.list("").await.unwrap(), ["staging/part"]);
}
