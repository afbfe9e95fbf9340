//! The audit chain itself, without I/O: how a record is hashed, redacted and verified.
//!
//! Every field of a record is committed to by its own SHA-256 (`field_commitment`), and a
//! record's hash covers the previous record's hash, its sequence number, its time and
//! the field commitments. So a personal field can later be replaced by its commitment
//! (`redacted:<hex>`) and the chain still verifies, while any other change to a record,
//! or a record removed, inserted or moved, breaks it. Signed checkpoints pin the chain's
//! hash at a sequence number, so a chain pruned before a checkpoint still verifies from
//! there, and a chain cut short after one is caught.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash before the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// The prefix of a field replaced by its commitment.
pub const REDACTED: &str = "redacted:";

/// One audit record as stored and exported (JSON lines).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub seq: i64,
    pub at_ms: i64,
    /// Who: an API token's public id, `reaper`, `cli`, `queue`.
    pub actor: String,
    /// What, e.g. `video.uploaded`, `consent.revoked`, `video.played`.
    pub action: String,
    /// On what: a video or upload id, or a subject's hash prefix.
    pub object: String,
    /// `ok`, or why not.
    pub result: String,
    /// Keyed hash of the data subject concerned (redactable).
    pub subject: Option<String>,
    pub request_id: Option<String>,
    /// Hex of the previous record's hash (or of the checkpoint the chain starts from).
    pub prev_hash: String,
    pub hash: String,
}

/// A signed statement that the chain's record `seq` has hash `hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at_ms: i64,
    /// Hex of the first 8 bytes of the signing key's SHA-256.
    pub key_id: String,
    /// Hex Ed25519 signature over [`checkpoint_message`].
    pub signature: String,
}

/// The content of a record before it is chained.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub actor: String,
    pub action: String,
    pub object: String,
    pub result: String,
    pub subject: Option<String>,
    pub request_id: Option<String>,
}

impl Entry {
    /// A change concerning a data subject as a whole (consent, holds, erasure): the
    /// object names the subject by the prefix of its keyed hash.
    pub fn about_subject(actor: &str, action: &str, subject_hash: &str, result: &str) -> Self {
        Entry {
            actor: actor.to_string(),
            action: action.to_string(),
            object: format!("subject {}", subject_prefix(subject_hash)),
            result: result.to_string(),
            subject: Some(subject_hash.to_string()),
            request_id: None,
        }
    }
}

/// The first 12 hex digits of a subject's keyed hash: enough to follow one subject in
/// logs and audit objects, never the subject itself.
pub fn subject_prefix(subject_hash: &str) -> &str {
    subject_hash.get(..12).unwrap_or(subject_hash)
}

/// SHA-256 commitment to one field's value (`None` differs from `Some("")`); a redacted
/// field is its own commitment.
pub fn field_commitment(name: &str, value: Option<&str>) -> Option<[u8; 32]> {
    if let Some(hex) = value.and_then(|v| v.strip_prefix(REDACTED)) {
        return crate::hex::decode(hex)?.try_into().ok();
    }
    let mut h = Sha256::new();
    h.update(b"vcw-audit-field\0");
    h.update(name.as_bytes());
    h.update([0, u8::from(value.is_some())]);
    h.update(value.unwrap_or("").as_bytes());
    Some(h.finalize().into())
}

/// A record's hash; `None` when a redacted field is not a valid commitment.
pub fn record_hash(
    prev: &[u8; 32],
    seq: i64,
    at_ms: i64,
    fields: &[(&str, Option<&str>)],
) -> Option<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"vcw-audit-v1\0");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    for (name, value) in fields {
        h.update(field_commitment(name, *value)?);
    }
    Some(h.finalize().into())
}

impl Record {
    /// The fields the hash covers, in order.
    fn fields(&self) -> [(&'static str, Option<&str>); 6] {
        [
            ("actor", Some(&self.actor)),
            ("action", Some(&self.action)),
            ("object", Some(&self.object)),
            ("result", Some(&self.result)),
            ("subject", self.subject.as_deref()),
            ("request_id", self.request_id.as_deref()),
        ]
    }

    /// Chains `entry` after `prev` as record `seq`.
    pub fn chain(entry: Entry, prev: &[u8; 32], seq: i64, at_ms: i64) -> Record {
        let mut record = Record {
            seq,
            at_ms,
            actor: entry.actor,
            action: entry.action,
            object: entry.object,
            result: entry.result,
            subject: entry.subject,
            request_id: entry.request_id,
            prev_hash: crate::hex::encode(prev),
            hash: String::new(),
        };
        // Unredacted fields always have a commitment.
        let hash = record_hash(prev, seq, at_ms, &record.fields()).unwrap_or(GENESIS);
        record.hash = crate::hex::encode(&hash);
        record
    }

    /// What the hash of this record should be, from its content and `prev_hash`.
    pub fn recomputed(&self) -> Option<[u8; 32]> {
        let prev: [u8; 32] = crate::hex::decode(&self.prev_hash)?.try_into().ok()?;
        record_hash(&prev, self.seq, self.at_ms, &self.fields())
    }

    /// Replaces the personal fields (actor, object, subject) by their commitments.
    pub fn redact(&mut self) {
        let redact = |name: &str, v: &mut String| {
            if !v.starts_with(REDACTED)
                && let Some(c) = field_commitment(name, Some(v))
            {
                *v = format!("{REDACTED}{}", crate::hex::encode(&c));
            }
        };
        redact("actor", &mut self.actor);
        redact("object", &mut self.object);
        if let Some(s) = &mut self.subject {
            redact("subject", s);
        }
    }
}

/// The bytes a checkpoint's signature covers.
pub fn checkpoint_message(seq: i64, hash: &str, at_ms: i64) -> Vec<u8> {
    let mut m = b"vcw-audit-checkpoint\0".to_vec();
    m.extend(seq.to_be_bytes());
    m.extend(hash.as_bytes());
    m.extend(at_ms.to_be_bytes());
    m
}

/// What verification found wrong, first problem only, naming the record.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    #[error("record {seq} was edited: its content does not match its hash")]
    Edited { seq: i64 },
    #[error("records {from} to {to} are missing (deleted)")]
    Deleted { from: i64, to: i64 },
    #[error("record {seq} appears twice (inserted)")]
    Duplicate { seq: i64 },
    #[error("record {seq} is out of place: it follows record {follows} in the chain (reordered)")]
    Reordered { seq: i64, follows: i64 },
    #[error(
        "the chain breaks before record {seq}: a record was inserted, or removed and the rest renumbered"
    )]
    Broken { seq: i64 },
    #[error(
        "the log ends at record {last} but a signed checkpoint covers record {checkpoint} (truncated)"
    )]
    Truncated { last: i64, checkpoint: i64 },
    #[error("the log ends at record {last} but the chain's head is record {head} (truncated)")]
    Headless { last: i64, head: i64 },
    #[error("record {seq} differs from what the signed checkpoint at {seq} says (rewritten)")]
    Rewritten { seq: i64 },
    #[error("the checkpoint at record {seq} has a bad signature")]
    BadCheckpoint { seq: i64 },
    #[error(
        "the log starts at record {seq} with no signed checkpoint to anchor it (pruned or cut)"
    )]
    Unanchored { seq: i64 },
}

/// What a clean verification covered.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub records: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub checkpoints: u64,
    pub redacted: u64,
}

/// Verifies a chain record by record, in storage order, in constant memory (but for the
/// checkpoints): push every record, then finish.
pub struct ChainCheck<'a> {
    /// Signed checkpoints, in sequence order.
    checkpoints: &'a [Checkpoint],
    running: String,
    expected: i64,
    summary: Verified,
}

impl<'a> ChainCheck<'a> {
    /// Checks every checkpoint's signature with `check_signature` first.
    pub fn new(
        checkpoints: &'a [Checkpoint],
        check_signature: impl Fn(&Checkpoint) -> bool,
    ) -> Result<Self, Tamper> {
        if let Some(c) = checkpoints.iter().find(|c| !check_signature(c)) {
            return Err(Tamper::BadCheckpoint { seq: c.seq });
        }
        Ok(ChainCheck {
            checkpoints,
            running: crate::hex::encode(&GENESIS),
            expected: 1,
            summary: Verified {
                checkpoints: checkpoints.len() as u64,
                ..Verified::default()
            },
        })
    }

    /// Checks the next record. `find` says which record has a given hash (to tell a
    /// record moved from one inserted).
    pub fn push(
        &mut self,
        r: &Record,
        find: impl FnOnce(&str) -> Option<i64>,
    ) -> Result<(), Tamper> {
        if self.summary.first.is_none() {
            // The chain starts at genesis, or at a signed checkpoint (pruned before it).
            self.summary.first = Some(r.seq);
            self.expected = r.seq;
            if r.seq != 1 {
                self.running = self
                    .checkpoints
                    .iter()
                    .find(|c| c.seq == r.seq - 1)
                    .map(|c| c.hash.clone())
                    .ok_or(Tamper::Unanchored { seq: r.seq })?;
            }
        }
        if r.seq < self.expected {
            return Err(Tamper::Duplicate { seq: r.seq });
        }
        if r.seq > self.expected {
            return Err(Tamper::Deleted {
                from: self.expected,
                to: r.seq - 1,
            });
        }
        if r.prev_hash != self.running {
            return Err(match find(&r.prev_hash) {
                Some(follows) => Tamper::Reordered {
                    seq: r.seq,
                    follows,
                },
                None => Tamper::Broken { seq: r.seq },
            });
        }
        let hash = r.recomputed().ok_or(Tamper::Edited { seq: r.seq })?;
        if crate::hex::encode(&hash) != r.hash {
            return Err(Tamper::Edited { seq: r.seq });
        }
        if let Ok(i) = self.checkpoints.binary_search_by_key(&r.seq, |c| c.seq)
            && self.checkpoints[i].hash != r.hash
        {
            return Err(Tamper::Rewritten { seq: r.seq });
        }
        if [&r.actor, &r.object]
            .iter()
            .any(|f| f.starts_with(REDACTED))
            || r.subject
                .as_deref()
                .is_some_and(|s| s.starts_with(REDACTED))
        {
            self.summary.redacted += 1;
        }
        self.running = r.hash.clone();
        self.expected += 1;
        self.summary.records += 1;
        self.summary.last = Some(r.seq);
        Ok(())
    }

    /// Ends the check: a checkpoint past the last record means the log was cut short.
    /// With no record at all, only the checkpoints are left (pruned to the last one):
    /// nothing to compare them with.
    pub fn finish(self) -> Result<Verified, Tamper> {
        let Some(last) = self.summary.last else {
            return Ok(self.summary);
        };
        if let Some(c) = self.checkpoints.iter().rev().find(|c| c.seq > last) {
            return Err(Tamper::Truncated {
                last,
                checkpoint: c.seq,
            });
        }
        Ok(self.summary)
    }
}

/// Verifies `records` (in storage order) against the signed `checkpoints` (in sequence
/// order).
pub fn verify(
    records: &[Record],
    checkpoints: &[Checkpoint],
    check_signature: impl Fn(&Checkpoint) -> bool,
) -> Result<Verified, Tamper> {
    let mut check = ChainCheck::new(checkpoints, check_signature)?;
    for r in records {
        check.push(r, |hash| {
            records.iter().find(|x| x.hash == hash).map(|x| x.seq)
        })?;
    }
    check.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Record> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let entry = Entry {
                    actor: format!("token-{}", seq % 3),
                    action: "video.played".into(),
                    object: format!("video-{seq}"),
                    result: "ok".into(),
                    subject: Some(format!("subject-{}", seq % 2)),
                    request_id: None,
                };
                let r = Record::chain(entry, &prev, seq, 1_000 + seq);
                prev = crate::hex::decode(&r.hash).unwrap().try_into().unwrap();
                r
            })
            .collect()
    }

    fn checkpoint(r: &Record) -> Checkpoint {
        Checkpoint {
            seq: r.seq,
            hash: r.hash.clone(),
            at_ms: r.at_ms,
            key_id: "k".into(),
            signature: "ok".into(),
        }
    }

    fn signed(c: &Checkpoint) -> bool {
        c.signature == "ok"
    }

    #[test]
    fn an_intact_chain_verifies_and_every_tampering_is_named() {
        let records = chain(10);
        let cps = vec![checkpoint(&records[4]), checkpoint(&records[9])];
        assert_eq!(verify(&records, &cps, signed).unwrap().records, 10);

        let mut edited = records.clone();
        edited[3].result = "refused".into();
        assert_eq!(
            verify(&edited, &cps, signed),
            Err(Tamper::Edited { seq: 4 })
        );

        let mut deleted = records.clone();
        deleted.remove(6);
        assert_eq!(
            verify(&deleted, &cps, signed),
            Err(Tamper::Deleted { from: 7, to: 7 })
        );

        let mut duplicated = records.clone();
        duplicated.insert(3, records[2].clone());
        assert_eq!(
            verify(&duplicated, &cps, signed),
            Err(Tamper::Duplicate { seq: 3 })
        );

        // Swap the content of records 6 and 7 (keeping the numbers in place).
        let mut reordered = records.clone();
        reordered.swap(5, 6);
        (reordered[5].seq, reordered[6].seq) = (6, 7);
        assert_eq!(
            verify(&reordered, &cps, signed),
            Err(Tamper::Reordered { seq: 6, follows: 7 })
        );

        // A forged record inserted and the rest renumbered and rehashed: the signed
        // checkpoint no longer matches.
        let mut forged: Vec<Record> = records[..2].to_vec();
        let mut prev: [u8; 32] = crate::hex::decode(&records[1].hash)
            .unwrap()
            .try_into()
            .unwrap();
        for (i, r) in records[2..].iter().enumerate() {
            let entry = Entry {
                actor: r.actor.clone(),
                action: if i == 0 {
                    "forged".into()
                } else {
                    r.action.clone()
                },
                object: r.object.clone(),
                result: r.result.clone(),
                subject: r.subject.clone(),
                request_id: None,
            };
            let next = Record::chain(entry, &prev, r.seq, r.at_ms);
            prev = crate::hex::decode(&next.hash).unwrap().try_into().unwrap();
            forged.push(next);
        }
        assert_eq!(
            verify(&forged, &cps, signed),
            Err(Tamper::Rewritten { seq: 5 })
        );

        let truncated = records[..8].to_vec();
        assert_eq!(
            verify(&truncated, &cps, signed),
            Err(Tamper::Truncated {
                last: 8,
                checkpoint: 10
            })
        );

        let mut bad = cps.clone();
        bad[1].signature = "forged".into();
        assert_eq!(
            verify(&records, &bad, signed),
            Err(Tamper::BadCheckpoint { seq: 10 })
        );
    }

    #[test]
    fn redaction_and_pruning_keep_the_chain_verifiable() {
        let mut records = chain(10);
        let cps = vec![checkpoint(&records[4]), checkpoint(&records[9])];
        for r in &mut records[..6] {
            r.redact();
        }
        assert!(records[0].subject.as_deref().unwrap().starts_with(REDACTED));
        let verified = verify(&records, &cps, signed).unwrap();
        assert_eq!(verified.redacted, 6);
        // Pruned up to the checkpoint at 5: verifies from there.
        assert_eq!(verify(&records[5..], &cps, signed).unwrap().first, Some(6));
        // Pruned elsewhere: nothing anchors the rest.
        assert_eq!(
            verify(&records[3..], &cps, signed),
            Err(Tamper::Unanchored { seq: 4 })
        );
    }
}
