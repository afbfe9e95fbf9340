//! The tus checksum extension: a PATCH may carry `Upload-Checksum: <algorithm> <base64
//! digest>` of its body; the body is hashed as it streams through the sealer, and a
//! mismatch discards the part (460) so that a client resends what was damaged on the way
//! instead of vcw storing it.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::HeaderMap;
use base64::Engine as _;
use sha2::Digest as _;
use tokio::io::{AsyncRead, ReadBuf};

use super::error::ApiError;

/// What `Tus-Checksum-Algorithm` announces.
pub const ALGORITHMS: &str = "sha1,sha256";

/// A running digest of one of the supported algorithms.
enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    fn finalize(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// The checksum a request announced: the digest it expects, and the running one.
pub struct Expected {
    hasher: Hasher,
    digest: Vec<u8>,
}

impl Expected {
    /// The request's `Upload-Checksum`, if it sent one; 400 for a malformed header or an
    /// algorithm not in [`ALGORITHMS`].
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get("upload-checksum") else {
            return Ok(None);
        };
        let bad = |why: &str| ApiError::BadRequest(format!("Upload-Checksum: {why}"));
        let value = value.to_str().map_err(|_| bad("not text"))?;
        let (algorithm, digest) = (value.trim().split_once(' '))
            .ok_or_else(|| bad("expected `<algorithm> <base64 digest>`"))?;
        let digest = base64::engine::general_purpose::STANDARD
            .decode(digest.trim())
            .map_err(|_| bad("the digest is not base64"))?;
        let hasher = match algorithm {
            "sha1" => Hasher::Sha1(sha1::Sha1::new()),
            "sha256" => Hasher::Sha256(sha2::Sha256::new()),
            _ => {
                return Err(bad(&format!(
                    "unsupported algorithm (supported: {ALGORITHMS})"
                )));
            }
        };
        Ok(Some(Self { hasher, digest }))
    }

    /// Whether what was read matches (constant time: the digest is the client's own,
    /// but there is no reason to leak where it differs).
    pub fn matches(self) -> bool {
        let got = self.hasher.finalize();
        subtle::ConstantTimeEq::ct_eq(got.as_slice(), self.digest.as_slice()).into()
    }
}

/// A reader that hashes what passes through it, when a checksum was announced.
pub struct Hashing<R> {
    inner: R,
    pub expected: Option<Expected>,
}

impl<R> Hashing<R> {
    pub fn new(inner: R, expected: Option<Expected>) -> Self {
        Self { inner, expected }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(e)) = (&polled, &mut this.expected) {
            e.hasher.update(&buf.filled()[before..]);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use tokio::io::AsyncReadExt as _;

    fn announced(value: &str) -> Result<Option<Expected>, ApiError> {
        let mut h = HeaderMap::new();
        h.insert("upload-checksum", HeaderValue::from_str(value).unwrap());
        Expected::from_headers(&h)
    }

    async fn read_through(body: &[u8], expected: Expected) -> bool {
        let mut r = Hashing::new(body, Some(expected));
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, body);
        r.expected.unwrap().matches()
    }

    #[tokio::test]
    async fn digests_match_the_reference_values() {
        // `printf hello | sha1sum` / `sha256sum`, in base64.
        let sha1 = announced("sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=")
            .unwrap()
            .unwrap();
        assert!(read_through(b"hello", sha1).await);
        let sha256 = "sha256 LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
        assert!(read_through(b"hello", announced(sha256).unwrap().unwrap()).await);
        assert!(!read_through(b"hellO", announced(sha256).unwrap().unwrap()).await);
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert!(announced("md5 XUFAKrxLKna5cZ2REBfFkg==").is_err());
        assert!(announced("sha1").is_err());
        assert!(announced("sha1 !!!").is_err());
        let none = Expected::from_headers(&HeaderMap::new()).unwrap();
        assert!(none.is_none());
    }
}
