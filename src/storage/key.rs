//! Key rules shared by every backend.
//!
//! Keys are relative, `/`-separated paths such as `videos/<uuid>/seg-00001.sealed`. The
//! rules are strict on purpose: the same key must mean the same object on a filesystem and
//! on S3, and must never be able to escape the store root.

use super::StorageError;

/// Longest accepted key, in bytes; S3's own limit, so keys stay portable between backends.
pub const MAX_KEY_LEN: usize = 1024;

/// Checks that `key` names an object.
///
/// Accepted: characters `[A-Za-z0-9._/-]`, at most [`MAX_KEY_LEN`] bytes, no leading or
/// trailing `/`, no empty component, and no component starting with `.`. The last rule
/// rejects `.` and `..` (no path traversal) and also reserves dot-names for the
/// filesystem backend's temp files, so a key can never collide with an in-flight upload.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let invalid = |reason| {
        Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };

    if key.is_empty() {
        return invalid("key is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return invalid("key is longer than 1024 bytes");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
    {
        return invalid("key may only contain A-Z a-z 0-9 . _ / -");
    }
    if key.starts_with('/') {
        return invalid("key must be relative");
    }
    for component in key.split('/') {
        if component.is_empty() {
            return invalid("key has an empty path component");
        }
        if component.starts_with('.') {
            return invalid("key components may not start with '.'");
        }
    }
    Ok(())
}

/// Checks a listing prefix: `""` (everything), or a key with an optional trailing `/`.
///
/// A prefix may end in the middle of a component (`videos/ab` matches `videos/abc/...`);
/// it follows the key rules so it cannot point outside the store either.
pub fn validate_prefix(prefix: &str) -> Result<(), StorageError> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_key(prefix.strip_suffix('/').unwrap_or(prefix)).map_err(|err| match err {
        StorageError::InvalidKey { reason, .. } => StorageError::InvalidKey {
            key: prefix.to_owned(),
            reason,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_keys() {
        for key in [
            "manifest.sealed",
            "videos/0f8fad5b-d9cb-469f-a165-70867728950e/seg-00001.sealed",
            "a/b_c/D-9.x",
        ] {
            assert!(validate_key(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn rejects_bad_keys() {
        let long = "a".repeat(MAX_KEY_LEN + 1);
        for key in [
            "",
            "/abs/path",
            "a/../b",
            "..",
            "./a",
            "a//b",
            "a/",
            "a/.tmp-123",
            ".hidden",
            "sp ace",
            "a\\b",
            "ümlaut",
            "a\0b",
            long.as_str(),
        ] {
            assert!(
                matches!(validate_key(key), Err(StorageError::InvalidKey { .. })),
                "{key:?} should be rejected"
            );
        }
    }

    #[test]
    fn prefixes() {
        for prefix in ["", "videos/", "videos/ab", "videos"] {
            assert!(validate_prefix(prefix).is_ok(), "{prefix:?}");
        }
        for prefix in ["/", "/videos", "../", "videos//", "a/.tmp"] {
            assert!(validate_prefix(prefix).is_err(), "{prefix:?}");
        }
    }
}
