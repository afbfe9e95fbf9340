//! The vault: sealed objects together with their keys and catalog rows.
//!
//! Sealing an object for a data subject gets (or creates) the subject's key, wrapped by
//! the KEK, makes a fresh data key wrapped by the subject key, seals the stream, and
//! records the object. Opening finds the object's keys from the id in its header, checks
//! the header against the catalog (an older copy of the object is refused), and releases
//! plaintext only chunk by chunk after verification. Shredding destroys wrapped keys, so
//! the sealed bytes, wherever copies of them live, can no longer be opened.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::catalog::{Catalog, CatalogError, ObjectRow, SubjectKeyRow};
use crate::crypto::{
    CryptoError, DataKey, HEADER_LEN, Header, KeyError, Kms, LocalKms, RangeSource, SealParams,
    random, unwrap_key, wrap_key,
};
use crate::domain::clock::unix_now;
use crate::domain::id_hex;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(
        "object {0} is not in the catalog (sealed with another catalog, or its header is damaged)"
    )]
    UnknownObject(String),
    #[error("object {0} has been shredded: its key is destroyed and it can never be opened again")]
    Shredded(String),
    #[error("object {0} does not match the catalog: an older or altered copy of the object")]
    Mismatch(String),
    #[error(
        "object {found} is not the object expected here ({expected}): the store holds a swapped or misplaced object"
    )]
    WrongObject { expected: String, found: String },
    #[error("subject key {0}…: created and shredded concurrently again and again; retry")]
    Contended(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl VaultError {
    /// What kind of integrity failure this is, if it is one: a sealed object that is not
    /// what the catalog says (swapped, altered, replaced) or that fails authentication.
    /// Counted in `vcw_integrity_failures_total` and shown on the dashboard.
    pub fn integrity_kind(&self) -> Option<&'static str> {
        match self {
            VaultError::WrongObject { .. } => Some("wrong_object"),
            VaultError::Mismatch(_) => Some("mismatch"),
            VaultError::UnknownObject(_) => Some("unknown_object"),
            VaultError::Crypto(
                CryptoError::HeaderAuthFailed
                | CryptoError::ChunkAuthFailed { .. }
                | CryptoError::Truncated { .. }
                | CryptoError::TrailingData { .. }
                | CryptoError::EmptyFinalChunk { .. }
                | CryptoError::BadMagic,
            ) => Some("authentication"),
            _ => None,
        }
    }

    /// Counts `result`'s error if it is an integrity failure.
    fn noted<T>(result: Result<T, VaultError>) -> Result<T, VaultError> {
        if let Err(kind) = result.as_ref().map_err(VaultError::integrity_kind)
            && let Some(kind) = kind
        {
            crate::metrics::integrity_failure(kind);
        }
        result
    }

    /// Worth retrying: the catalog or the store may answer next time. Everything else
    /// (a shredded, unknown, altered or swapped object, a bad key) stays as it is.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            VaultError::Catalog(_) | VaultError::Io(_) | VaultError::Contended(_)
        )
    }
}

/// The keys and catalog behind sealed objects.
pub struct Vault {
    kms: LocalKms,
    catalog: Catalog,
}

fn subject_context(hash: &str, version: i64) -> String {
    format!("subject:{hash}:v{version}")
}

fn object_context(object_id: &[u8]) -> String {
    format!("object:{}", id_hex(object_id))
}

/// Outcome of a shred.
#[derive(Debug, serde::Serialize)]
pub struct ShredReport {
    pub subject_key_destroyed: bool,
    pub objects: Vec<String>,
}

impl Vault {
    pub async fn load(keyring: &Path, data_dir: &Path) -> Result<Self, VaultError> {
        let kms = LocalKms::load(keyring)?;
        let catalog = Catalog::open(data_dir).await?;
        Ok(Self { kms, catalog })
    }

    /// The keyring with an already open catalog (PostgreSQL in cluster mode).
    pub fn with_catalog(keyring: &Path, catalog: Catalog) -> Result<Self, VaultError> {
        Ok(Self {
            kms: LocalKms::load(keyring)?,
            catalog,
        })
    }

    pub fn kms(&self) -> &LocalKms {
        &self.kms
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The subject's live key, created on first use (or after a shred). Creation is
    /// insert-if-absent then re-read, so concurrent first uses of a subject all end up
    /// with the one key that won; nothing sealed is ever under a key that lost.
    async fn subject_key(
        &self,
        subject_hash: &str,
    ) -> Result<(SubjectKeyRow, crate::crypto::Key16), VaultError> {
        // Two rounds suffice: a lost race means a live key exists on the re-read, unless
        // that key was shredded in between, which the second round replaces.
        for _ in 0..3 {
            let existing = self.catalog.subject_key(subject_hash).await?;
            if let Some(row) = &existing
                && let Some(wrapped) = &row.wrapped
            {
                let key = self.kms.unwrap(
                    row.kek_version as u32,
                    wrapped,
                    &subject_context(subject_hash, row.version),
                )?;
                return Ok((row.clone(), key));
            }
            // First use, or the previous key was shredded: a new version, never the old key.
            let replaces = existing.map(|old| old.version);
            let version = replaces.map_or(1, |v| v + 1);
            let key = random::<16>()?;
            let (kek_version, wrapped) = self
                .kms
                .wrap(&key, &subject_context(subject_hash, version))?;
            let row = SubjectKeyRow {
                subject_hash: subject_hash.to_string(),
                key_id: random::<16>()?.to_vec(),
                version,
                wrapped: Some(wrapped),
                kek_version: i64::from(kek_version),
                shredded_at: None,
            };
            if self.catalog.create_subject_key(&row, replaces).await? {
                return Ok((row, key));
            }
        }
        Err(VaultError::Contended(
            subject_hash.chars().take(8).collect(),
        ))
    }

    /// Keyed hash of a subject identifier (what the catalog stores).
    pub fn kms_subject_hash(&self, subject: &str) -> Result<String, VaultError> {
        Ok(self.kms.subject_hash(subject)?)
    }

    /// Removes an object's catalog row (a seal whose bytes were never stored).
    pub async fn forget(&self, object_id: &[u8]) -> Result<(), VaultError> {
        Ok(self.catalog.delete_object(object_id).await?)
    }

    /// Seals `input` into `output` for `subject`; `location` records where the sealed
    /// bytes will live. The catalog row is written only after sealing succeeded.
    pub async fn seal<R, W>(
        &self,
        subject: &str,
        location: &str,
        input: R,
        output: W,
    ) -> Result<(ObjectRow, Header), VaultError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let subject_hash = self.kms.subject_hash(subject)?;
        self.seal_for_hash(&subject_hash, location, input, output)
            .await
    }

    /// [`Vault::seal`] for a subject known only by its keyed hash: the service hashes
    /// subjects as requests arrive and never stores the raw identifier.
    pub async fn seal_for_hash<R, W>(
        &self,
        subject_hash: &str,
        location: &str,
        input: R,
        output: W,
    ) -> Result<(ObjectRow, Header), VaultError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let subject_hash = subject_hash.to_string();
        let (subject_row, subject_key) = self.subject_key(&subject_hash).await?;
        let object_id = *random::<16>()?;
        let data_key = DataKey::generate()?;
        let wrapped = wrap_key(&subject_key, data_key.expose(), &object_context(&object_id))?;
        let mut subject_key_id = [0u8; 16];
        subject_key_id.copy_from_slice(&subject_row.key_id);
        let params = SealParams {
            object_id,
            data_key_id: *random::<16>()?,
            subject_key_id,
            subject_key_version: subject_row.version as u32,
            kek_version: subject_row.kek_version as u32,
            ..SealParams::default()
        };
        let summary = crate::crypto::seal(&data_key, &params, None, input, output).await?;
        let row = ObjectRow {
            object_id: object_id.to_vec(),
            subject_hash,
            data_key_id: params.data_key_id.to_vec(),
            wrapped_data_key: Some(wrapped),
            subject_key_version: subject_row.version,
            header_tag: summary.header.header_tag.to_vec(),
            plaintext_len: summary.plaintext_len as i64,
            sealed_len: summary.sealed_len as i64,
            location: location.to_string(),
            created_at: unix_now(),
            shredded_at: None,
        };
        self.catalog.insert_object(&row).await?;
        (crate::metrics::metrics().sealed_bytes).inc_by(summary.plaintext_len);
        Ok((row, summary.header))
    }

    /// The data key of a sealed object whose header is `header`. With `expected`, the
    /// header must name that object: a catalog reference never opens another object that
    /// was put in its place (for example one of an allowed video in place of a blocked one).
    async fn data_key(
        &self,
        header: &Header,
        expected: Option<&[u8; 16]>,
    ) -> Result<DataKey, VaultError> {
        let id = id_hex(&header.object_id);
        if let Some(want) = expected
            && want != &header.object_id
        {
            tracing::warn!(
                expected = %id_hex(want),
                found = %id,
                "sealed object does not match its catalog reference"
            );
            return Err(VaultError::WrongObject {
                expected: id_hex(want),
                found: id,
            });
        }
        let row = self
            .catalog
            .object(&header.object_id)
            .await?
            .ok_or_else(|| VaultError::UnknownObject(id.clone()))?;
        let Some(wrapped) = &row.wrapped_data_key else {
            return Err(VaultError::Shredded(id));
        };
        if row.header_tag != header.header_tag {
            return Err(VaultError::Mismatch(id));
        }
        let subject = self
            .catalog
            .subject_key(&row.subject_hash)
            .await?
            .filter(|s| s.version == row.subject_key_version)
            .and_then(|s| s.wrapped.map(|w| (w, s.kek_version, s.version)));
        let Some((subject_wrapped, kek_version, version)) = subject else {
            return Err(VaultError::Shredded(id));
        };
        let subject_key = self.kms.unwrap(
            kek_version as u32,
            &subject_wrapped,
            &subject_context(&row.subject_hash, version),
        )?;
        let key = unwrap_key(&subject_key, wrapped, &object_context(&header.object_id))?;
        Ok(DataKey::from_bytes(*key))
    }

    /// Verifies and decrypts a whole sealed stream into `output`; with `expected`, only if
    /// it is that object.
    pub async fn open<R, W>(
        &self,
        mut input: R,
        expected: Option<&[u8; 16]>,
        output: W,
    ) -> Result<u64, VaultError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let opened = VaultError::noted(
            async {
                let mut head = [0u8; HEADER_LEN];
                let mut got = 0;
                while got < HEADER_LEN {
                    let n = input.read(&mut head[got..]).await?;
                    if n == 0 {
                        return Err(CryptoError::TruncatedHeader(got).into());
                    }
                    got += n;
                }
                let header = Header::parse(&head)?;
                let key = self.data_key(&header, expected).await?;
                let input = std::io::Cursor::new(head).chain(input);
                Ok(crate::crypto::open(&key, input, output)
                    .await?
                    .plaintext_len)
            }
            .await,
        )?;
        (crate::metrics::metrics().opened_bytes).inc_by(opened);
        Ok(opened)
    }

    /// Verifies and decrypts bytes `start..=end_inclusive` of the plaintext, reading only
    /// the header and the chunks the range touches; with `expected`, only if the source
    /// holds that object.
    pub async fn open_range<S, W>(
        &self,
        source: &S,
        expected: Option<&[u8; 16]>,
        start: u64,
        end_inclusive: u64,
        output: W,
    ) -> Result<u64, VaultError>
    where
        S: RangeSource + Sync,
        W: AsyncWrite + Unpin,
    {
        let opened = VaultError::noted(
            async {
                let head = source.read_at(0, HEADER_LEN).await?;
                let header = Header::parse(&head)?;
                let key = self.data_key(&header, expected).await?;
                Ok(crate::crypto::open_range(&key, source, start, end_inclusive, output).await?)
            }
            .await,
        )?;
        (crate::metrics::metrics().opened_bytes).inc_by(opened);
        Ok(opened)
    }

    /// Destroys the subject's key and every one of its objects' data keys.
    pub async fn shred_subject(&self, subject: &str) -> Result<ShredReport, VaultError> {
        let hash = self.kms.subject_hash(subject)?;
        let (destroyed, objects) = self.catalog.shred_subject(&hash).await?;
        Ok(ShredReport {
            subject_key_destroyed: destroyed,
            objects: objects.iter().map(|o| id_hex(&o.object_id)).collect(),
        })
    }

    /// Destroys one object's data key.
    pub async fn shred_object(&self, object_id: &[u8; 16]) -> Result<ShredReport, VaultError> {
        let row = self.catalog.shred_object(object_id).await?;
        if row.is_none() && self.catalog.object(object_id).await?.is_none() {
            return Err(VaultError::UnknownObject(id_hex(object_id)));
        }
        Ok(ShredReport {
            subject_key_destroyed: false,
            objects: row.iter().map(|o| id_hex(&o.object_id)).collect(),
        })
    }

    /// Adds a KEK version and rewraps every live subject key under it. Content and
    /// data keys are untouched. Returns (new version, subject keys rewrapped).
    pub async fn rotate(&self) -> Result<(u32, usize), VaultError> {
        let rows = self.catalog.live_subject_keys().await?;
        // Unwrap everything first: a key that cannot be unwrapped stops the rotation
        // before anything changes.
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(wrapped) = &row.wrapped {
                let ctx = subject_context(&row.subject_hash, row.version);
                keys.push((
                    row,
                    self.kms.unwrap(row.kek_version as u32, wrapped, &ctx)?,
                    ctx,
                ));
            }
        }
        let version = self.kms.add_version()?;
        for (row, key, ctx) in &keys {
            let (v, wrapped) = self.kms.wrap(key, ctx)?;
            self.catalog
                .rewrap_subject_key(&row.subject_hash, row.version, &wrapped, v)
                .await?;
        }
        let result = format!(
            "KEK v{version} current; {} subject keys rewrapped",
            keys.len()
        );
        self.catalog
            .audit(vault_entry("keys.rotate", result))
            .await?;
        Ok((version, keys.len()))
    }

    /// Destroys the KEK versions that no backup can need any more, so that what was
    /// shredded stays shredded even for someone holding an old backup of the catalog (a
    /// PostgreSQL backup or WAL still holds the wrapped key a shred destroyed): a version
    /// is retired once it is not current, no live subject key is wrapped under it, and
    /// the rotation that superseded it is more than `backup_retention` old (every backup
    /// from before then has expired). Running services read the keyring file before each
    /// wrap, so none wraps under a superseded version.
    pub async fn retire(
        &self,
        backup_retention: std::time::Duration,
    ) -> Result<Retirement, VaultError> {
        let now = crate::domain::clock::unix_now() as u64;
        let in_use = self.catalog.kek_versions_in_use().await?;
        let versions = self.kms.versions();
        let current = self.kms.current_version();
        let mut out = Retirement::default();
        for (i, k) in versions.iter().enumerate() {
            let superseded = versions[i + 1..].iter().map(|n| n.created).min();
            let keep = |reason: String| KeptKek {
                version: k.version,
                reason,
            };
            match (superseded, in_use.get(&k.version)) {
                _ if k.version == current => out.kept.push(keep("current".into())),
                (_, Some(n)) => out.kept.push(keep(format!(
                    "{n} live subject key(s) still wrapped under it: run `vcw keys rotate`"
                ))),
                (None, None) => out.kept.push(keep("no newer version supersedes it".into())),
                (Some(at), None) if now.saturating_sub(at) < backup_retention.as_secs() => {
                    out.kept.push(keep(format!(
                        "superseded {} day(s) ago; backups from before then may still exist",
                        now.saturating_sub(at) / 86_400
                    )))
                }
                _ => out.retired.push(k.version),
            }
        }
        if !out.retired.is_empty() {
            self.kms.retire(&out.retired)?;
            let result = format!("retired KEK versions {:?}", out.retired);
            self.catalog
                .audit(vault_entry("keys.retire", result))
                .await?;
        }
        Ok(out)
    }
}

/// An audit record of a key-management change.
fn vault_entry(action: &str, result: String) -> crate::domain::audit::Entry {
    crate::domain::audit::Entry {
        actor: "vault".into(),
        action: action.into(),
        object: "keyring".into(),
        result,
        subject: None,
        request_id: None,
    }
}

/// What `vcw keys retire` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Retirement {
    pub retired: Vec<u32>,
    pub kept: Vec<KeptKek>,
}

/// A KEK version kept, and why.
#[derive(Debug, serde::Serialize)]
pub struct KeptKek {
    pub version: u32,
    pub reason: String,
}
