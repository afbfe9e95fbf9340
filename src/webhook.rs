//! Webhooks: a signed POST to the job's callback URL when a job ends.
//!
//! Webhooks are outbox events (see [`crate::dispatcher`]), written in the same
//! transaction that records the job's end, so a crash never loses one; this module only
//! signs and sends them.
//!
//! Signature: `Vcw-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! Receivers recompute it over the raw body and reject stale timestamps (replay).
//!
//! Callback URLs come from uploaders: every address is checked against
//! [`OutboundPolicy`] after resolution, on the address connected to; redirects are not
//! followed; a receiver's answer is read up to 64 KiB.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

use crate::outbound::OutboundPolicy;

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

/// Resolves a receiver's name and keeps only the addresses the policy allows, so the
/// connection is made to a checked address (no second lookup between check and use).
#[derive(Clone)]
struct CheckedResolver {
    policy: Arc<OutboundPolicy>,
}

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = (found.into_iter())
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.unwrap_or_else(|| format!("{} has no address", name.as_str()));
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    why,
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}

type HttpsClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector<CheckedResolver>>, Full<Bytes>>;

/// Sends signed webhook requests.
pub struct WebhookClient {
    secret: zeroize::Zeroizing<Vec<u8>>,
    client: HttpsClient,
    policy: Arc<OutboundPolicy>,
    /// How long one attempt may take before it counts as failed.
    timeout: Duration,
}
/// How much of a receiver's answer is read (then the connection is dropped).
const MAX_ANSWER: usize = 64 << 10;

impl WebhookClient {
    pub fn new(secret: &str, policy: OutboundPolicy, timeout: Duration) -> std::io::Result<Self> {
        let policy = Arc::new(policy);
        let mut http = HttpConnector::new_with_resolver(CheckedResolver {
            policy: policy.clone(),
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            secret: zeroize::Zeroizing::new(secret.as_bytes().to_vec()),
            client: Client::builder(TokioExecutor::new()).build(https),
            policy,
            timeout,
        })
    }

    /// POSTs `body` to `url`, signed, with the event id as `Vcw-Delivery` (the receiver's
    /// idempotency key). Returns the HTTP status (a redirect is a status like any other:
    /// never followed).
    pub async fn send(&self, url: &str, event_id: &str, body: &str) -> Result<u16, String> {
        let uri: hyper::Uri = url.parse().map_err(|_| "not a URL".to_string())?;
        // An address in the URL is never resolved, so it is checked here.
        if let Some(ip) = literal_ip(&uri) {
            self.policy.check(ip)?;
        }
        let ts = crate::domain::clock::unix_now();
        let request = hyper::Request::post(uri)
            .header("content-type", "application/json")
            .header("user-agent", concat!("vcw/", env!("CARGO_PKG_VERSION")))
            .header("vcw-delivery", event_id)
            .header(
                "vcw-signature",
                signature(&self.secret, ts, body.as_bytes()),
            )
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| causes(&e))?;
        let status = response.status().as_u16();
        // Read a bounded answer (so the connection can be reused), then let it go.
        let answer = http_body_util::Limited::new(response.into_body(), MAX_ANSWER);
        let _ = tokio::time::timeout(self.timeout, answer.collect()).await;
        Ok(status)
    }
}

/// The IP address a URL names literally (`http://10.0.0.1/`, `http://[::1]:8080/`).
pub fn literal_ip(uri: &hyper::Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// An error with its causes: hyper's own message ("client error (Connect)") names none.
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
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
