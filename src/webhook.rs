//! Webhooks: a signed POST to the job's callback URL when a job ends.
//!
//! Webhooks are outbox events (see [`crate::dispatcher`]), written in the same
//! transaction that records the job's end, so a crash never loses one; this module only
//! signs and sends them.
//!
//! Signature: `Vcw-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! Receivers recompute it over the raw body and reject stale timestamps (replay).

use std::time::Duration;

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

/// `t=...,v1=...` for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        crate::hex::encode(&mac.finalize().into_bytes())
    )
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Sends signed webhook requests.
pub struct WebhookClient {
    secret: zeroize::Zeroizing<Vec<u8>>,
    client: HttpsClient,
}

/// How long one attempt may take before it counts as failed.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

impl WebhookClient {
    pub fn new(secret: &str) -> std::io::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            secret: zeroize::Zeroizing::new(secret.as_bytes().to_vec()),
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// POSTs `body` to `url`, signed, with the event id as `Vcw-Delivery` (the receiver's
    /// idempotency key). Returns the HTTP status.
    pub async fn send(&self, url: &str, event_id: &str, body: &str) -> Result<u16, String> {
        let ts = crate::domain::clock::unix_now();
        let request = hyper::Request::post(url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("vcw/", env!("CARGO_PKG_VERSION")))
            .header("vcw-delivery", event_id)
            .header(
                "vcw-signature",
                signature(&self.secret, ts, body.as_bytes()),
            )
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        // Drain (bounded by the timeout) so the connection can be reused.
        let _ = tokio::time::timeout(ATTEMPT_TIMEOUT, response.into_body().collect()).await;
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac() {
        // HMAC-SHA256(key="secret", "1700000000.{}"), computed with
        // `printf '1700000000.{}' | openssl dgst -sha256 -hmac secret`.
        let sig = signature(b"secret", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }
}
