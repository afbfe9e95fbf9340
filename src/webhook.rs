//! Webhooks: a signed POST to the job's callback URL when a job ends.
//!
//! Deliveries are rows in the catalog, written in the same step that records the job's
//! end, so a crash never loses one. A dispatcher sends due deliveries and retries with
//! exponential backoff; every attempt's status is recorded.
//!
//! Signature: `Vcw-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! Receivers recompute it over the raw body and reject stale timestamps (replay).

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

use crate::catalog::{Catalog, Delivery};

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

pub struct Dispatcher {
    catalog: Catalog,
    secret: Vec<u8>,
    client: HttpsClient,
    max_attempts: i64,
    retry_base: Duration,
}

/// How long one attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

impl Dispatcher {
    pub fn new(
        catalog: Catalog,
        secret: &str,
        max_attempts: i64,
        retry_base: Duration,
    ) -> std::io::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            catalog,
            secret: secret.as_bytes().to_vec(),
            client: Client::builder(TokioExecutor::new()).build(https),
            max_attempts,
            retry_base,
        })
    }

    /// Sends due deliveries until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self
                .catalog
                .claim_delivery(self.max_attempts, ATTEMPT_TIMEOUT.as_millis() as i64 * 3)
                .await
            {
                Ok(Some(delivery)) => {
                    self.attempt(&delivery).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("webhook dispatcher: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn attempt(&self, d: &Delivery) {
        let (status, error) = match self.send(d).await {
            Ok(status) => (Some(status), None),
            Err(e) => (None, Some(e)),
        };
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        let backoff = self.retry_base.as_millis() as i64 * (1i64 << (d.attempts.clamp(1, 16) - 1));
        if !delivered {
            tracing::info!(
                video = %d.video_id,
                attempt = d.attempts,
                status = ?status,
                error = error.as_deref().unwrap_or(""),
                "webhook not delivered"
            );
        }
        if let Err(e) = self
            .catalog
            .record_delivery(&d.id, status, error.as_deref(), delivered, backoff)
            .await
        {
            tracing::warn!("webhook dispatcher: recording delivery: {e}");
        }
    }

    async fn send(&self, d: &Delivery) -> Result<u16, String> {
        let ts = crate::catalog::unix_now();
        let request = hyper::Request::post(&d.url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("vcw/", env!("CARGO_PKG_VERSION")))
            .header("vcw-delivery", &d.id)
            .header(
                "vcw-signature",
                signature(&self.secret, ts, d.body.as_bytes()),
            )
            .body(Full::new(Bytes::from(d.body.clone())))
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
