//! S3 connection settings and client construction.
//!
//! The client is built directly from `aws-sdk-s3` rather than through `aws-config`: vcw
//! needs only static keys (from its config or the standard env vars), and `aws-config`'s
//! credential chain drags in SSO, STS, IMDS and profile parsing.

use std::fmt;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use crate::storage::StorageError;

/// Total tries per request (1 + 4 retries) with the SDK's standard retry mode, which
/// retries throttling, 5xx, timeouts and connection errors with jittered exponential
/// backoff (1 s initial, 20 s cap). A multi-GiB upload is many requests, so one flaky
/// part should not fail the whole video.
const MAX_ATTEMPTS: u32 = 5;

/// Fail fast on an unreachable endpoint; there is deliberately no overall operation
/// timeout, since a single 8 MiB part or a streaming GET can legitimately take long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach an S3-compatible service (AWS, MinIO, Garage, s3s, ...): the `[s3]`
/// section of the configuration, or `VCW__S3__ENDPOINT`, `VCW__S3__PATH_STYLE`, ...
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL such as `http://127.0.0.1:9000`; `None` means AWS for `region`.
    pub endpoint: Option<String>,
    /// Signing region; most S3-compatible servers accept `us-east-1`.
    pub region: String,
    /// Access key id; with `secret_key`. When both are `None`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN` are read instead.
    pub access_key: Option<String>,
    pub secret_key: Option<crate::secret::Secret>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most self-hosted servers.
    pub path_style: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: "us-east-1".to_owned(),
            access_key: None,
            secret_key: None,
            path_style: false,
        }
    }
}

/// Hand-written so that logging a config can never print the secret key.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key)
            .field("path_style", &self.path_style)
            .finish()
    }
}

impl S3Config {
    /// Static credentials from the config, falling back to the standard env vars.
    fn credentials(&self) -> Result<Credentials, StorageError> {
        match (&self.access_key, &self.secret_key) {
            (Some(access), Some(secret)) => Ok(Credentials::new(
                access,
                secret.expose(),
                None,
                None,
                "vcw-config",
            )),
            (None, None) => {
                let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
                match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(access), Some(secret)) => Ok(Credentials::new(
                        access,
                        secret,
                        var("AWS_SESSION_TOKEN"),
                        None,
                        "vcw-env",
                    )),
                    _ => Err(config_error(
                        "no S3 credentials: set access_key/secret_key or \
                         AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                    )),
                }
            }
            _ => Err(config_error(
                "access_key and secret_key must be set together",
            )),
        }
    }

    /// Builds the SDK client: rustls (ring) over hyper, standard retries, and transfer
    /// checksums only where S3 requires them.
    ///
    /// Checksums are `WhenRequired` because the objects are AEAD-sealed (corruption is
    /// caught when decrypting) and the transport is TLS; the SDK's newer
    /// checksum-by-default behaviour is also not understood by several S3-compatible
    /// servers.
    pub(super) fn client(&self) -> Result<Client, StorageError> {
        if self.region.is_empty() {
            return Err(config_error("region must not be empty"));
        }
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http_client)
            .region(Region::new(self.region.clone()))
            .credentials_provider(self.credentials()?)
            .force_path_style(self.path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build(),
            )
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(Client::from_conf(builder.build()))
    }
}

fn config_error(detail: &str) -> StorageError {
    StorageError::Config {
        detail: detail.to_owned(),
    }
}
