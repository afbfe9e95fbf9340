//! The consent-aware cache of decrypted segments (moka), so that a segment played again
//! is neither fetched from the store nor decrypted again.
//!
//! Consent decides what it may hold, not only time and size:
//! - keys are the subject's keyed hash and the object id, never the raw subject;
//! - an entry lives at most `min(server.cache_seconds, consent expiry - now)` (moka's
//!   per-entry expiry, recomputed on update), weighed by its bytes under a byte budget;
//! - a per-subject index lets a revocation remove exactly that subject's entries, in time
//!   proportional to them; a per-subject generation, bumped first, is checked at insert
//!   and at read, so a load that started before a revocation never puts plaintext back;
//! - values are zeroized when the last reference goes.
//!
//! Serving never trusts the cache alone: each request checks the subject's consent in the
//! catalog first (a revocation on any node is seen at once). Revocations evict the
//! subject's entries on every node: announced over NATS in cluster mode
//! ([`crate::fanout`]), and read from the ledger every second by the cache task of `vcw
//! serve` and `vcw api`. A node that cannot read the ledger, or lost the announcements,
//! suspends its cache (fail closed).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::notification::RemovalCause;
use moka::sync::Cache;
use zeroize::Zeroizing;

/// Decrypted bytes, zeroized when the last holder drops them.
pub type Plain = Arc<Zeroizing<Vec<u8>>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    subject: Arc<str>,
    object: [u8; 16],
}

#[derive(Clone)]
struct Entry {
    bytes: Plain,
    generation: u64,
    /// When the subject's consent expires.
    consent_until: Instant,
}

/// Per entry: the cache's lifetime, cut short by the subject's consent expiry.
struct ConsentExpiry {
    ttl: Duration,
}

impl ConsentExpiry {
    fn left(&self, e: &Entry, now: Instant) -> Option<Duration> {
        Some(self.ttl.min(e.consent_until.saturating_duration_since(now)))
    }
}

impl Expiry<Key, Entry> for ConsentExpiry {
    fn expire_after_create(&self, _: &Key, e: &Entry, now: Instant) -> Option<Duration> {
        self.left(e, now)
    }

    fn expire_after_update(
        &self,
        _: &Key,
        e: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.left(e, now)
    }
}

/// What the cache did, for the dashboard and metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evicted_expired: AtomicU64,
    pub evicted_size: AtomicU64,
    pub evicted_revoked: AtomicU64,
}

type Index = Mutex<HashMap<Arc<str>, HashSet<[u8; 16]>>>;

pub struct SegmentCache {
    cache: Cache<Key, Entry>,
    index: Arc<Index>,
    generations: Mutex<HashMap<Arc<str>, u64>>,
    /// Set while this node may have missed a revocation: nothing is served from the
    /// cache or put into it.
    suspended: AtomicBool,
    pub stats: Arc<CacheStats>,
}

impl SegmentCache {
    /// A cache of at most `budget` bytes, entries living at most `ttl`.
    pub fn new(budget: u64, ttl: Duration) -> Self {
        let index: Arc<Index> = Arc::default();
        let stats: Arc<CacheStats> = Arc::default();
        let (listener_index, listener_stats) = (index.clone(), stats.clone());
        let cache = Cache::builder()
            .max_capacity(budget)
            .weigher(|_: &Key, e: &Entry| u32::try_from(e.bytes.len()).unwrap_or(u32::MAX))
            .expire_after(ConsentExpiry { ttl })
            .eviction_listener(move |key: Arc<Key>, _, cause| {
                let counter = match cause {
                    RemovalCause::Expired => &listener_stats.evicted_expired,
                    RemovalCause::Size => &listener_stats.evicted_size,
                    // Explicit: a revocation, counted there; Replaced: still indexed.
                    RemovalCause::Explicit | RemovalCause::Replaced => return,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let mut index = listener_index.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(objects) = index.get_mut(&key.subject) {
                    objects.remove(&key.object);
                    if objects.is_empty() {
                        index.remove(&key.subject);
                    }
                }
            })
            .build();
        SegmentCache {
            cache,
            index,
            generations: Mutex::default(),
            suspended: AtomicBool::new(false),
            stats,
        }
    }

    /// The subject's revocation generation: take it before loading, hand it to
    /// [`SegmentCache::insert`].
    pub fn generation(&self, subject: &str) -> u64 {
        let g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        g.get(subject).copied().unwrap_or(0)
    }

    /// The cached plaintext of `object`, unless the subject's consent was revoked since
    /// it was loaded.
    pub fn get(&self, subject: &str, object: &[u8; 16]) -> Option<Plain> {
        let key = Key {
            subject: subject.into(),
            object: *object,
        };
        match self.cache.get(&key) {
            Some(e) if e.generation == self.generation(subject) && !self.is_suspended() => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(e.bytes)
            }
            stale => {
                if stale.is_some() {
                    self.cache.invalidate(&key);
                }
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Keeps `bytes` of `object`, loaded at `generation`, until the subject's consent
    /// expires at `consent_until_ms` (Unix ms) at the latest. Refused when the subject's
    /// consent was revoked since the load started.
    pub fn insert(
        &self,
        subject: &str,
        object: &[u8; 16],
        bytes: Plain,
        generation: u64,
        consent_until_ms: i64,
    ) {
        if generation != self.generation(subject) || self.is_suspended() {
            return;
        }
        let left = consent_until_ms.saturating_sub(crate::domain::clock::now_ms());
        let Ok(left) = u64::try_from(left) else {
            return;
        };
        let subject: Arc<str> = subject.into();
        self.index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(subject.clone())
            .or_default()
            .insert(*object);
        let entry = Entry {
            bytes,
            generation,
            consent_until: Instant::now() + Duration::from_millis(left),
        };
        self.cache.insert(
            Key {
                subject,
                object: *object,
            },
            entry,
        );
    }

    /// Forgets every entry of the subject: the generation first (nothing loaded before
    /// now is served or stored again), then each indexed entry. Returns how many went.
    pub fn revoke(&self, subject: &str) -> usize {
        let subject: Arc<str> = subject.into();
        *self
            .generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(subject.clone())
            .or_default() += 1;
        let objects = self
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&subject)
            .unwrap_or_default();
        for object in &objects {
            self.cache.invalidate(&Key {
                subject: subject.clone(),
                object: *object,
            });
        }
        self.stats
            .evicted_revoked
            .fetch_add(objects.len() as u64, Ordering::Relaxed);
        objects.len()
    }

    /// Drops everything (a node that lost track of revocations fails closed).
    pub fn clear(&self) {
        let mut g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        for subject in self
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(s, _)| s)
        {
            *g.entry(subject).or_default() += 1;
        }
        self.cache.invalidate_all();
    }

    /// Stops serving and filling the cache, and empties it: this node may have missed a
    /// revocation (fail closed) until [`SegmentCache::resume`].
    pub fn suspend(&self) {
        self.suspended.store(true, Ordering::SeqCst);
        self.clear();
    }

    /// Uses the cache again, once every revocation is known.
    pub fn resume(&self) {
        self.suspended.store(false, Ordering::SeqCst);
    }

    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::SeqCst)
    }

    /// Runs expiry and eviction now (and their listener), with or without traffic.
    pub fn maintain(&self) {
        self.cache.run_pending_tasks();
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.cache.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(n: usize) -> Plain {
        Arc::new(Zeroizing::new(vec![7; n]))
    }

    fn far() -> i64 {
        crate::domain::clock::now_ms() + 3_600_000
    }

    #[test]
    fn revocation_removes_the_subjects_entries_and_a_late_load_cannot_return() {
        let cache = SegmentCache::new(1 << 20, Duration::from_secs(60));
        let g = cache.generation("a");
        for i in 0..10u8 {
            cache.insert("a", &[i; 16], plain(100), g, far());
        }
        cache.insert("b", &[1; 16], plain(100), cache.generation("b"), far());
        assert!(cache.get("a", &[3; 16]).is_some());
        // A load that started before the revocation finishes after it.
        let before = cache.generation("a");
        assert_eq!(cache.revoke("a"), 10);
        cache.insert("a", &[42; 16], plain(100), before, far());
        assert!(cache.get("a", &[42; 16]).is_none(), "refused at insert");
        assert!((0..10u8).all(|i| cache.get("a", &[i; 16]).is_none()));
        assert!(cache.get("b", &[1; 16]).is_some(), "other subjects stay");
        assert_eq!(cache.stats.evicted_revoked.load(Ordering::Relaxed), 10);

        // Suspended (a node that lost the fan-out): empty, and nothing goes in or out
        // until resumed.
        cache.suspend();
        assert!(cache.get("b", &[1; 16]).is_none());
        cache.insert("b", &[2; 16], plain(100), cache.generation("b"), far());
        cache.resume();
        assert!(cache.get("b", &[2; 16]).is_none(), "nothing was stored");
        cache.insert("b", &[2; 16], plain(100), cache.generation("b"), far());
        assert!(cache.get("b", &[2; 16]).is_some());
    }

    #[test]
    fn an_entry_lives_no_longer_than_the_consent_and_the_budget_holds() {
        let cache = SegmentCache::new(1000, Duration::from_secs(60));
        let soon = crate::domain::clock::now_ms() + 150;
        cache.insert("a", &[1; 16], plain(100), 0, soon);
        assert!(cache.get("a", &[1; 16]).is_some());
        std::thread::sleep(Duration::from_millis(300));
        cache.maintain();
        assert!(
            cache.get("a", &[1; 16]).is_none(),
            "expired with the consent"
        );
        // moka's timer wheel removes it (and tells the listener) within about a second.
        let deadline = Instant::now() + Duration::from_secs(5);
        while cache.stats.evicted_expired.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "expiry never ran");
            std::thread::sleep(Duration::from_millis(100));
            cache.maintain();
        }
        assert!(
            cache.index.lock().unwrap().is_empty(),
            "and leaves the index"
        );
        // Already-expired consent is not cached at all.
        cache.insert(
            "a",
            &[2; 16],
            plain(100),
            0,
            crate::domain::clock::now_ms() - 1,
        );
        assert!(cache.get("a", &[2; 16]).is_none());
        for i in 0..30u8 {
            cache.insert("c", &[i; 16], plain(100), 0, far());
        }
        cache.maintain();
        assert!(cache.bytes() <= 1000, "{} bytes", cache.bytes());
        assert!(cache.stats.evicted_size.load(Ordering::Relaxed) > 0);
    }
}
