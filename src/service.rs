//! What every role of the service shares: configuration, policy, vault (keys + catalog),
//! blob store, job queue and a directory for sealed temporary files.

use std::path::PathBuf;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::policy::Policy;
use crate::queue::JobQueue;
use crate::storage::BlobStore;
use crate::vault::Vault;

pub struct Service {
    pub config: Config,
    pub policy: Policy,
    pub vault: Arc<Vault>,
    pub store: Arc<dyn BlobStore>,
    pub queue: Arc<dyn JobQueue>,
    /// Sealed staging files only (never plaintext).
    pub tmp_dir: PathBuf,
    /// Checks the consent tokens uploads carry.
    pub consent: crate::consent::Verifier,
    /// Signs audit checkpoints (none in a cluster process without the key file).
    pub audit: Option<crate::audit::AuditSigner>,
    /// Decrypted segments for playback (`server.cache_bytes`; none when 0).
    pub cache: Option<crate::cache::SegmentCache>,
    /// Revocation fan-out to the other API nodes (cluster mode only).
    pub fanout: Option<crate::fanout::Fanout>,
}

impl Service {
    pub fn catalog(&self) -> &Catalog {
        self.vault.catalog()
    }

    /// A fresh store key for an upload part at `start`. The random suffix means two
    /// requests racing on one offset never write (or, losing, delete) each other's part.
    pub fn part_key(upload_id: &str, start: i64) -> Result<String, crate::crypto::KeyError> {
        let nonce = crate::hex::encode(&*crate::crypto::random::<8>()?);
        Ok(format!("staging/{upload_id}/{start:016}-{nonce}.sealed"))
    }

    /// Publishes the job announcement a commit just wrote (see
    /// [`crate::dispatcher::publish_now`]).
    pub async fn announce(&self, video_id: &str) {
        let event = crate::domain::OutboxEvent::publish(video_id, 0);
        crate::dispatcher::publish_now(self.catalog(), &*self.queue, &event).await;
    }
}
