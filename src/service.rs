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
}

impl Service {
    pub fn catalog(&self) -> &Catalog {
        self.vault.catalog()
    }

    /// The store key of an upload part.
    pub fn part_key(upload_id: &str, start: i64) -> String {
        format!("staging/{upload_id}/{start:016}.sealed")
    }
}
