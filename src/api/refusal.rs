//! Refusing a request whose body is still on its way.
//!
//! A server that answers before reading the body and then closes the connection makes
//! the kernel reset it while the client is still sending: the client sees a broken pipe
//! or a reset instead of the 4xx that says what was wrong. So a refusal first reads (and
//! drops) a bounded part of the body. Bounded in bytes and time, because the client may
//! be hostile.

use std::time::Duration;

use axum::body::Body;
use futures_util::StreamExt as _;
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

use super::error::ApiError;

/// Most a refused body costs: 1 MiB read, 2 s waited.
const DRAIN_LIMIT: u64 = 1 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads (a bounded part of) a refused body, then hands back the refusal.
pub async fn refuse_body(body: Body, refusal: ApiError) -> ApiError {
    let stream = body
        .into_data_stream()
        .map(|r| r.map_err(std::io::Error::other));
    drain(&mut StreamReader::new(stream)).await;
    refusal
}

/// Reads and drops the rest of a body, up to the bounds.
pub async fn drain(reader: &mut (impl AsyncRead + Unpin)) {
    let mut rest = tokio::io::AsyncReadExt::take(reader, DRAIN_LIMIT);
    let _ = tokio::time::timeout(
        DRAIN_TIME,
        tokio::io::copy(&mut rest, &mut tokio::io::sink()),
    )
    .await;
}
