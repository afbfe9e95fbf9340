//! Backend selection by URI; no server is contacted.

use vcw::storage::{S3Config, StorageError, open_store};

fn s3_config() -> S3Config {
    S3Config {
        endpoint: Some("http://127.0.0.1:1".to_owned()),
        access_key: Some("AKEXAMPLE".to_owned()),
        secret_key: Some(vcw::secret::Secret::new("very-secret")),
        path_style: true,
        ..S3Config::default()
    }
}

#[test]
fn filesystem_uris() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("objects");
    let expected = format!("fs:{}", path.display());

    let plain = open_store(path.to_str().unwrap(), &s3_config()).unwrap();
    assert_eq!(plain.describe(), expected);
    let uri = format!("file://{}", path.display());
    assert_eq!(open_store(&uri, &s3_config()).unwrap().describe(), expected);

    let relative = open_store("relative/objects", &s3_config()).unwrap();
    let described = relative.describe();
    assert!(described.starts_with("fs:/") && described.ends_with("/relative/objects"));
}

#[test]
fn s3_uris() {
    let with_prefix = open_store("s3://vcw-bucket/some/prefix/", &s3_config()).unwrap();
    assert_eq!(with_prefix.describe(), "s3://vcw-bucket/some/prefix");
    let bare = open_store("s3://vcw-bucket", &s3_config()).unwrap();
    assert_eq!(bare.describe(), "s3://vcw-bucket");
    let described = format!("{}{:?}", bare.describe(), s3_config());
    assert!(!described.contains("very-secret"), "{described}");
}

#[test]
fn bad_uris() {
    for uri in [
        "",
        "file://",
        "http://host/x",
        "s3://",
        "s3://ab",
        "s3://Upper",
        "s3://-bucket",
    ] {
        assert!(
            matches!(
                open_store(uri, &s3_config()),
                Err(StorageError::InvalidUri { .. })
            ),
            "{uri:?}"
        );
    }
    assert!(matches!(
        open_store("s3://vcw-bucket/../up", &s3_config()),
        Err(StorageError::InvalidKey { .. })
    ));
}

#[test]
fn half_configured_credentials_are_an_error() {
    let config = S3Config {
        secret_key: None,
        ..s3_config()
    };
    assert!(matches!(
        open_store("s3://vcw-bucket", &config),
        Err(StorageError::Config { .. })
    ));
}
