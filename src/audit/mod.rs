//! The audit trail: every state change and every access to personal data appends a record
//! (time, actor, action, object, result, subject hash, request id) to a hash chain in the
//! catalog, in the same transaction as the change ([`crate::domain::audit`] says how
//! records are hashed, redacted and verified). The deployment's Ed25519 key signs checkpoints of the chain's
//! head at a regular interval ([`checkpoint`], run by the reaper), so that an auditor can
//! verify the log offline (`vcw audit export`, `vcw audit verify --file`), and so that
//! pruning old records (`audit.retention_days`) leaves a signed anchor behind.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

pub use crate::domain::audit::{
    ChainCheck, Checkpoint, Entry, GENESIS, REDACTED, Record, Tamper, Verified, checkpoint_message,
    field_commitment, record_hash, verify,
};

use crate::catalog::{Catalog, CatalogError};

/// The deployment's audit key (zeroized on drop by ed25519-dalek).
pub struct AuditSigner {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AuditSigner {
    /// Reads the key at `path`, creating it if `create` and there is none.
    pub fn open(path: &Path, create: bool) -> Result<Self, String> {
        let key = if create {
            crate::crypto::signing_key_file(path)?
        } else {
            crate::crypto::read_signing_key(path)?
        };
        let key_id = crate::crypto::key_id(&key.verifying_key());
        Ok(AuditSigner { key, key_id })
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// A signed checkpoint of record `seq` with hash `hash`.
    pub fn sign(&self, seq: i64, hash: &str, at_ms: i64) -> Checkpoint {
        let signature = self.key.sign(&checkpoint_message(seq, hash, at_ms));
        Checkpoint {
            seq,
            hash: hash.to_string(),
            at_ms,
            key_id: self.key_id.clone(),
            signature: crate::hex::encode(&signature.to_bytes()),
        }
    }
}

/// A statement signed with the deployment's key: a deletion receipt.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SignedStatement {
    /// What is stated (JSON).
    pub body: serde_json::Value,
    /// Hex of the first 8 bytes of the signing key's SHA-256.
    pub key_id: String,
    /// Hex Ed25519 signature over `"vcw-statement\0"` and the body's compact JSON.
    pub signature: String,
}

fn statement_message(body: &serde_json::Value) -> Vec<u8> {
    let mut m = b"vcw-statement\0".to_vec();
    // serde_json writes a Value's keys in one fixed order, so re-serialising a parsed
    // statement gives the bytes that were signed.
    m.extend(body.to_string().into_bytes());
    m
}

impl AuditSigner {
    /// Signs `body`.
    pub fn sign_statement(&self, body: serde_json::Value) -> SignedStatement {
        let signature = self.key.sign(&statement_message(&body));
        SignedStatement {
            body,
            key_id: self.key_id.clone(),
            signature: crate::hex::encode(&signature.to_bytes()),
        }
    }
}

/// Whether `s` is signed by `key`.
pub fn statement_signed_by(key: &VerifyingKey, s: &SignedStatement) -> bool {
    let Some(bytes) = crate::hex::decode(&s.signature).and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    key.verify(&statement_message(&s.body), &Signature::from_bytes(&bytes))
        .is_ok()
}

/// Whether `c` is signed by `key`.
pub fn signed_by(key: &VerifyingKey, c: &Checkpoint) -> bool {
    let Some(bytes) = crate::hex::decode(&c.signature).and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    key.verify(
        &checkpoint_message(c.seq, &c.hash, c.at_ms),
        &Signature::from_bytes(&bytes),
    )
    .is_ok()
}

/// Signs a checkpoint of the chain's head, unless the last one already covers it.
pub async fn checkpoint(
    catalog: &Catalog,
    signer: &AuditSigner,
) -> Result<Option<Checkpoint>, CatalogError> {
    let (seq, hash) = catalog.audit_head().await?;
    let last = catalog.audit_checkpoints().await?.last().map(|c| c.seq);
    if seq == 0 || last == Some(seq) {
        return Ok(None);
    }
    let c = signer.sign(seq, &hash, crate::domain::clock::now_ms());
    catalog.add_audit_checkpoint(&c).await?;
    Ok(Some(c))
}

/// Verifies the catalog's whole log against its checkpoints, page by page, and that the
/// chain's head is its last record.
pub async fn verify_catalog(
    catalog: &Catalog,
    key: &VerifyingKey,
) -> Result<Result<Verified, Tamper>, CatalogError> {
    let checkpoints = catalog.audit_checkpoints().await?;
    let mut check = match ChainCheck::new(&checkpoints, |c| signed_by(key, c)) {
        Ok(c) => c,
        Err(t) => return Ok(Err(t)),
    };
    let mut after = i64::MIN;
    loop {
        let page = catalog.audit_records(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            // A moved record's predecessor is usually close by.
            let near = |hash: &str| page.iter().find(|x| x.hash == hash).map(|x| x.seq);
            if let Err(t) = check.push(r, near) {
                return Ok(Err(t));
            }
        }
    }
    let (head, _) = catalog.audit_head().await?;
    let verified = match check.finish() {
        Ok(v) => v,
        Err(t) => return Ok(Err(t)),
    };
    // The head names the last record written: the log must reach it (or, pruned to
    // nothing, the last checkpoint must be it).
    let reached = verified
        .last
        .or(checkpoints.last().map(|c| c.seq))
        .unwrap_or(0);
    if reached != head {
        return Ok(Err(Tamper::Headless {
            last: reached,
            head,
        }));
    }
    Ok(Ok(verified))
}
