//! The catalog's state machine and its races, on SQLite and on a real PostgreSQL 15:
//! concurrent first seals of one subject share a key; the claim fences attempts; results
//! and their events commit together or not at all; a cancelled or erased job never
//! records a result; the reaper's end of an attempt needs an expired lease; concurrent
//! parts at one offset and concurrent uploads with one id have exactly one winner; an
//! outbox event is handed to one dispatcher at a time; a catalog from a newer vcw is
//! refused.

use std::sync::Arc;

use vcw::catalog::{
    AttemptEnd, Catalog, CatalogError, ClaimOutcome, Completion, ConsentEvent, ConsentState, Grant,
    ManualClock, NewUpload, NewVideo, PartAdded, UploadPart, UploadRow, VideoFilter,
};
use vcw::crypto::LocalKms;
use vcw::domain::{EventKind, JobState, OutboxEvent, UploadState};
use vcw::vault::Vault;

use crate::cluster::Postgres;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn video<'a>(id: &'a str, callback: Option<&'a str>) -> NewVideo<'a> {
    NewVideo {
        id,
        subject_hash: "subject-hash",
        owner: "owner",
        source: r#"{"upload":{"upload_id":"x"}}"#,
        max_attempts: 2,
        callback_url: callback,
    }
}

async fn create(catalog: &Catalog, id: &str, length: i64) -> NewUpload {
    catalog
        .insert_upload(&upload(id, length), u64::MAX)
        .await
        .unwrap()
}

fn upload(id: &str, length: i64) -> UploadRow {
    UploadRow {
        id: id.into(),
        subject_hash: "subject-hash".into(),
        owner: "owner".into(),
        length,
        received: 0,
        filename: None,
        callback_url: None,
        state: UploadState::Receiving,
        created_at_ms: None,
    }
}

fn part(start: i64, len: i64, key: &str) -> UploadPart {
    UploadPart {
        start,
        len,
        store_key: key.into(),
        object_id: vec![7; 16],
    }
}

const ALLOWED: Completion = Completion {
    verdict: "allow",
    report: "{}",
    manifest: "{}",
    failed_check: None,
    hold: None,
};

fn webhook(id: &str) -> OutboxEvent {
    OutboxEvent {
        id: format!("{id}-done"),
        kind: EventKind::Webhook,
        video_id: id.into(),
        target: "http://127.0.0.1:9/hook".into(),
        body: "{}".into(),
    }
}

/// Every check below, against one catalog.
async fn state_machine(catalog: Catalog, keyring: &std::path::Path) {
    // --- concurrent first seals of fresh subjects share one key each --------------------
    let vault = Arc::new(Vault::with_catalog(keyring, catalog.clone()).unwrap());
    let mut tasks = Vec::new();
    for subject in 0..6 {
        for copy in 0..4 {
            let vault = vault.clone();
            tasks.push(tokio::spawn(async move {
                let hash = format!("fresh-subject-{subject}");
                let plain = format!("subject {subject} copy {copy}").into_bytes();
                let mut sealed = Vec::new();
                vault
                    .seal_for_hash(&hash, "test/loc", plain.as_slice(), &mut sealed)
                    .await
                    .unwrap();
                (plain, sealed)
            }));
        }
    }
    for task in tasks {
        let (plain, sealed) = task.await.unwrap();
        let mut opened = Vec::new();
        vault
            .open(sealed.as_slice(), None, &mut opened)
            .await
            .expect("every object sealed in the race opens");
        assert_eq!(opened, plain);
    }
    for subject in 0..6 {
        let key = catalog
            .subject_key(&format!("fresh-subject-{subject}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(key.version, 1, "one key, never replaced");
    }

    // --- claim, heartbeat, fencing ----------------------------------------------------
    assert!(
        catalog
            .insert_video(&video("v1", Some("http://h/x")), true)
            .await
            .unwrap()
    );
    assert!(
        !catalog
            .insert_video(&video("v1", None), true)
            .await
            .unwrap(),
        "idempotent"
    );
    assert_eq!(catalog.pending_events(EventKind::Publish).await.unwrap(), 1);
    let ClaimOutcome::Claimed(first) = catalog.claim("v1", 60_000).await.unwrap() else {
        panic!("a queued job is claimed");
    };
    assert_eq!(first.attempt, 1);
    assert!(matches!(
        catalog.claim("v1", 60_000).await.unwrap(),
        ClaimOutcome::Busy
    ));
    assert_eq!(
        catalog.heartbeat("v1", 1, 0.5, 60_000).await.unwrap(),
        Some(false)
    );
    assert_eq!(catalog.heartbeat("v1", 2, 0.5, 60_000).await.unwrap(), None);
    // The reaper cannot end a live lease.
    let expired = AttemptEnd {
        state: JobState::Queued,
        error: "lease expired",
        retry_in_ms: 0,
    };
    assert!(!catalog.end_expired("v1", 1, &expired, None).await.unwrap());
    assert!(catalog.expired_leases().await.unwrap().is_empty());
    // A lease of 1 ms runs out: the reaper requeues it, the old attempt is fenced off.
    assert!(catalog.heartbeat("v1", 1, 0.5, 1).await.unwrap().is_some());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(catalog.expired_leases().await.unwrap().len(), 1);
    assert_eq!(
        catalog.heartbeat("v1", 1, 0.6, 60_000).await.unwrap(),
        None,
        "an expired lease is not renewed: the attempt must stop"
    );
    let requeue = OutboxEvent::publish("v1", 1);
    assert!(
        catalog
            .end_expired("v1", 1, &expired, Some(&requeue))
            .await
            .unwrap()
    );
    assert!(
        !catalog.end_expired("v1", 1, &expired, None).await.unwrap(),
        "once"
    );
    assert_eq!(catalog.pending_events(EventKind::Publish).await.unwrap(), 2);
    let ClaimOutcome::Claimed(second) = catalog.claim("v1", 60_000).await.unwrap() else {
        panic!("the requeued job is claimed again");
    };
    assert_eq!(second.attempt, 2);
    // The first attempt's result is refused and writes no event.
    let ev = webhook("v1");
    assert!(
        !catalog
            .complete("v1", 1, &ALLOWED, Some(&ev))
            .await
            .unwrap()
    );
    assert_eq!(catalog.pending_events(EventKind::Webhook).await.unwrap(), 0);
    // The holder's result commits with its event, exactly once.
    assert!(
        catalog
            .complete("v1", 2, &ALLOWED, Some(&ev))
            .await
            .unwrap()
    );
    assert!(
        !catalog
            .complete("v1", 2, &ALLOWED, Some(&ev))
            .await
            .unwrap()
    );
    assert_eq!(catalog.pending_events(EventKind::Webhook).await.unwrap(), 1);
    let v = catalog.video("v1").await.unwrap().unwrap();
    assert_eq!((v.state, v.attempts), (JobState::Done, 2));
    assert_eq!(v.manifest.as_deref(), Some("{}"));
    assert!(matches!(
        catalog.claim("v1", 60_000).await.unwrap(),
        ClaimOutcome::Finished
    ));

    // --- a rendition that failed its check: failed, with verdict and manifest kept ----
    catalog
        .insert_video(&video("v4", None), false)
        .await
        .unwrap();
    let ClaimOutcome::Claimed(_) = catalog.claim("v4", 60_000).await.unwrap() else {
        panic!("claim v4");
    };
    let unfaithful = Completion {
        failed_check: Some("the stored HLS did not read back as written"),
        ..ALLOWED
    };
    assert!(catalog.complete("v4", 1, &unfaithful, None).await.unwrap());
    let v = catalog.video("v4").await.unwrap().unwrap();
    assert_eq!(v.state, JobState::Failed);
    assert_eq!(v.verdict.as_deref(), Some("allow"));
    assert_eq!(v.manifest.as_deref(), Some("{}"));
    assert!(v.error.unwrap().contains("did not read back"));

    // --- what the dashboard lists and plots: escalated first, figures per state --------
    catalog
        .insert_video(&video("v5", None), false)
        .await
        .unwrap();
    let ClaimOutcome::Claimed(_) = catalog.claim("v5", 60_000).await.unwrap() else {
        panic!("claim v5");
    };
    let leases = catalog.leases(10).await.unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!((leases[0].id.as_str(), leases[0].attempt), ("v5", 1));
    assert!(leases[0].lease_left_ms > 0 && leases[0].lease_left_ms <= 60_000);
    let escalated = Completion {
        verdict: "block",
        report: r#"{"escalate":true,"reasons":[]}"#,
        ..ALLOWED
    };
    assert!(catalog.complete("v5", 1, &escalated, None).await.unwrap());
    let only = |escalated| VideoFilter {
        escalated,
        ..VideoFilter::default()
    };
    let listed = catalog.list_videos(&only(true), None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
        ["v5"]
    );
    assert!(
        catalog
            .list_videos(&only(false), None, 10)
            .await
            .unwrap()
            .len()
            >= 3
    );
    assert_eq!(catalog.review_queue(10).await.unwrap()[0].id, "v5");
    let mix = catalog.verdict_mix().await.unwrap();
    assert_eq!(mix, [("allow".to_string(), 1), ("block".to_string(), 1)]);
    let buckets = catalog.throughput(0, 60_000).await.unwrap();
    let (done, failed) = buckets
        .iter()
        .fold((0, 0), |(d, f), b| (d + b.done, f + b.failed));
    assert_eq!(
        (done, failed),
        (2, 1),
        "v1 and v5 done, v4 failed: {buckets:?}"
    );
    assert_eq!(catalog.latencies(0, 10).await.unwrap().len(), 2);
    assert!(catalog.leases(10).await.unwrap().is_empty());

    // --- tokens: expired and revoked ones are not found; revocation is once -------------
    let now = vcw::domain::clock::now_ms();
    let insert = |hash: &'static str, id: &'static str, expires: Option<i64>| {
        let catalog = catalog.clone();
        async move {
            catalog
                .insert_token(hash, id, "admin", None, expires)
                .await
                .unwrap()
        }
    };
    insert("h-old", "0000000000000001", Some(now - 60_000)).await;
    insert("h-new", "0000000000000002", Some(now + 3_600_000)).await;
    insert("h-forever", "0000000000000003", None).await;
    assert!(catalog.token("h-old").await.unwrap().is_none(), "expired");
    assert!(catalog.token("h-new").await.unwrap().is_some());
    assert!(catalog.token("h-forever").await.unwrap().is_some());
    assert_eq!(catalog.revoke_token("0000000000000002").await.unwrap(), 1);
    assert_eq!(catalog.revoke_token("0000000000000002").await.unwrap(), 0);
    assert!(catalog.token("h-new").await.unwrap().is_none(), "revoked");
    let listed = catalog.tokens().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .iter()
            .any(|t| t.id == "0000000000000002" && t.revoked_at_ms.is_some())
    );

    // --- cancel and erase refuse results; a dead worker's cancel is the reaper's --------
    catalog
        .insert_video(&video("v2", None), false)
        .await
        .unwrap();
    let ClaimOutcome::Claimed(_) = catalog.claim("v2", 60_000).await.unwrap() else {
        panic!("claim v2");
    };
    assert_eq!(
        catalog.request_cancel("v2", "t").await.unwrap(),
        Some(JobState::Running)
    );
    assert_eq!(
        catalog.heartbeat("v2", 1, 0.1, 1).await.unwrap(),
        Some(true)
    );
    assert!(!catalog.complete("v2", 1, &ALLOWED, None).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(
        catalog.next_due().await.unwrap().is_none(),
        "a cancelled job whose worker died is not handed out again"
    );
    assert!(matches!(
        catalog.claim("v2", 60_000).await.unwrap(),
        ClaimOutcome::Finished
    ));
    let cancelled = AttemptEnd {
        state: JobState::Cancelled,
        error: "cancelled",
        retry_in_ms: 0,
    };
    assert!(
        catalog
            .end_expired("v2", 1, &cancelled, None)
            .await
            .unwrap()
    );
    assert_eq!(
        catalog.video("v2").await.unwrap().unwrap().state,
        JobState::Cancelled
    );

    catalog
        .insert_video(&video("v3", None), false)
        .await
        .unwrap();
    let ClaimOutcome::Claimed(_) = catalog.claim("v3", 60_000).await.unwrap() else {
        panic!("claim v3");
    };
    let erasing = catalog
        .begin_erase("v3", "t")
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(erasing.erased_at.is_some() && erasing.cancel_requested);
    assert!(!catalog.complete("v3", 1, &ALLOWED, None).await.unwrap());
    assert_eq!(catalog.unfinished_erasures().await.unwrap().len(), 1);
    catalog.finish_erase("v3").await.unwrap();
    assert!(catalog.unfinished_erasures().await.unwrap().is_empty());
    assert_eq!(
        catalog.video("v3").await.unwrap().unwrap().state,
        JobState::Cancelled
    );

    // --- parts racing at one offset: one wins, the upload completes once ---------------
    assert_eq!(create(&catalog, "u1", 30).await, NewUpload::Created);
    assert_eq!(create(&catalog, "u1", 30).await, NewUpload::Exists);
    assert_eq!(
        create(&catalog, "v1", 30).await,
        NewUpload::Exists,
        "an upload id may not take a video's id"
    );
    let mut racers = Vec::new();
    for n in 0..8 {
        let catalog = catalog.clone();
        racers.push(tokio::spawn(async move {
            let source = r#"{"upload":{"upload_id":"u1"}}"#;
            let v = NewVideo {
                source,
                ..video("u1", None)
            };
            catalog
                .add_upload_part("u1", &part(0, 10, &format!("k{n}")), &v)
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for r in racers {
        outcomes.push(r.await.unwrap());
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == PartAdded::Received(10))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == PartAdded::Conflict)
            .count(),
        7
    );
    let v = video("u1", None);
    assert_eq!(
        catalog
            .add_upload_part("u1", &part(10, 25, "big"), &v)
            .await
            .unwrap(),
        PartAdded::Conflict,
        "a part past Upload-Length is refused"
    );
    assert_eq!(
        catalog
            .add_upload_part("u1", &part(10, 20, "last"), &v)
            .await
            .unwrap(),
        PartAdded::Completed
    );
    assert_eq!(
        catalog.video("u1").await.unwrap().unwrap().state,
        JobState::Queued
    );
    assert_eq!(catalog.upload_parts("u1").await.unwrap().len(), 2);
    assert!(catalog.part_exists("last").await.unwrap());
    let parts = catalog
        .close_upload("u1", &[UploadState::Complete], UploadState::Consumed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parts.len(), 2);
    assert!(
        catalog
            .close_upload("u1", &[UploadState::Complete], UploadState::Consumed)
            .await
            .unwrap()
            .is_none(),
        "closed once"
    );

    // --- whole-body uploads with one id: exactly one completes --------------------------
    let mut racers = Vec::new();
    for n in 0..6 {
        let catalog = catalog.clone();
        racers.push(tokio::spawn(async move {
            if create(&catalog, "p1", 0).await != NewUpload::Created {
                return false;
            }
            catalog
                .complete_put(&part(0, 5, &format!("p{n}")), &video("p1", None))
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for r in racers {
        won += usize::from(r.await.unwrap());
    }
    assert_eq!(won, 1);
    assert_eq!(create(&catalog, "p2", 0).await, NewUpload::Created);
    catalog.drop_empty_upload("p2").await.unwrap();
    assert!(
        catalog.upload("p2").await.unwrap().is_none(),
        "the id is free again"
    );

    // --- an owner's open-upload budget holds under concurrent creates -------------------
    let mut racers = Vec::new();
    for n in 0..6 {
        let catalog = catalog.clone();
        racers.push(tokio::spawn(async move {
            let mut u = upload(&format!("budget-{n}"), 60);
            u.owner = "budgeted".into();
            catalog.insert_upload(&u, 100).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for r in racers {
        outcomes.push(r.await.unwrap());
    }
    let created = outcomes
        .iter()
        .filter(|o| **o == NewUpload::Created)
        .count();
    assert_eq!(created, 1, "60 + 60 bytes do not fit in 100: {outcomes:?}");
    assert!(outcomes.contains(&NewUpload::OverBudget { reserved: 60 }));
    let mut other = upload("budget-other-owner", 60);
    other.owner = "someone-else".into();
    let fits = catalog.insert_upload(&other, 100).await.unwrap();
    assert_eq!(fits, NewUpload::Created, "budgets are per owner");

    // --- an event is handed to one dispatcher at a time, until delivered ----------------
    let mut claims = Vec::new();
    for _ in 0..6 {
        let catalog = catalog.clone();
        claims.push(tokio::spawn(async move {
            catalog.claim_event(3, 60_000).await.unwrap()
        }));
    }
    let mut ids = Vec::new();
    for c in claims {
        if let Some(row) = c.await.unwrap() {
            ids.push(row.event.id);
        }
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no event claimed twice: {ids:?}");
    for id in &ids {
        catalog
            .record_event(id, Some(200), None, true, 0)
            .await
            .unwrap();
    }
    assert_eq!(catalog.pending_events(EventKind::Webhook).await.unwrap(), 0);
}

/// A token for subject `s` issued `issued` ms and expiring `expires` ms from now.
fn grant<'a>(
    s: &'a str,
    jti: &'a str,
    purposes: &'a [String],
    issued: i64,
    expires: i64,
) -> Grant<'a> {
    let now = vcw::domain::clock::now_ms();
    Grant {
        subject_hash: s,
        jti,
        issuer: "test",
        purposes,
        issued_at: now + issued,
        expires_at: now + expires,
        actor: "t",
    }
}

/// The consent ledger: grant, renew, revoke, expire; tokens from before a revocation never
/// count; concurrent reapers record a lapse once.
async fn consent_ledger(catalog: Catalog) {
    let p = ["moderation".to_string()];
    assert_eq!(
        catalog.consent_state("s1").await.unwrap(),
        ConsentState::None
    );
    assert_eq!(
        catalog
            .record_consent(&grant("s1", "a", &p, -10_000, 60_000))
            .await
            .unwrap(),
        Ok(())
    );
    // The same token again records nothing; another one renews.
    assert_eq!(
        catalog
            .record_consent(&grant("s1", "a", &p, -10_000, 60_000))
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        catalog
            .record_consent(&grant("s1", "b", &p, -5_000, 120_000))
            .await
            .unwrap(),
        Ok(())
    );
    let kinds = |h: Vec<ConsentEvent>| h.into_iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(
        kinds(catalog.consent_history("s1").await.unwrap()),
        ["grant", "renew"]
    );
    assert!(matches!(
        catalog.consent_state("s1").await.unwrap(),
        ConsentState::Live { .. }
    ));

    let revocation = catalog.revoke_consent("s1", "officer").await.unwrap();
    assert_eq!(
        catalog.consent_state("s1").await.unwrap(),
        ConsentState::Revoked {
            at: revocation.at_ms
        }
    );
    // A token issued before the revocation is refused, whenever it is presented.
    assert_eq!(
        catalog
            .record_consent(&grant("s1", "c", &p, -1_000, 60_000))
            .await
            .unwrap(),
        Err(revocation.at_ms)
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(
        catalog
            .record_consent(&grant("s1", "d", &p, 0, 60_000))
            .await
            .unwrap(),
        Ok(())
    );
    assert!(matches!(
        catalog.consent_state("s1").await.unwrap(),
        ConsentState::Live { .. }
    ));
    assert_eq!(
        kinds(catalog.consent_history("s1").await.unwrap()),
        ["grant", "renew", "revoke", "grant"]
    );

    // Consent that lapsed: one `expire` event, however many reapers look at once.
    assert_eq!(
        catalog
            .record_consent(&grant("s2", "e", &p, -60_000, -1_000))
            .await
            .unwrap(),
        Ok(())
    );
    assert!(matches!(
        catalog.consent_state("s2").await.unwrap(),
        ConsentState::Lapsed { .. }
    ));
    let (a, b) = tokio::join!(catalog.record_expiries(100), catalog.record_expiries(100));
    assert_eq!(a.unwrap() + b.unwrap(), 1, "one expire event");
    assert_eq!(catalog.record_expiries(100).await.unwrap(), 0);
    assert_eq!(
        kinds(catalog.consent_history("s2").await.unwrap()),
        ["grant", "expire"]
    );
    // A legal hold suspends erasure of the subject's videos until released; two holds
    // at once (eight here) are one.
    catalog
        .insert_video(&video("h1", None), false)
        .await
        .unwrap();
    let racers = (0..8).map(|_| catalog.set_hold("subject-hash", "litigation", "officer"));
    let set = futures_util::future::join_all(racers).await;
    assert_eq!(
        set.into_iter().filter(|r| *r.as_ref().unwrap()).count(),
        1,
        "one active hold"
    );
    let hold = catalog.begin_erase("h1", "t").await.unwrap().unwrap_err();
    assert_eq!(hold.set_by, "officer");
    assert!(
        catalog
            .video("h1")
            .await
            .unwrap()
            .unwrap()
            .erased_at
            .is_none()
    );
    assert!(
        catalog
            .release_hold("subject-hash", "officer")
            .await
            .unwrap()
    );
    assert!(
        !catalog
            .release_hold("subject-hash", "officer")
            .await
            .unwrap()
    );
    let erased = catalog
        .begin_erase("h1", "t")
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(erased.erased_at.is_some());

    // Revocations racing grants of tokens issued before them (eight at once): whatever
    // the interleaving, the revocations win.
    let racers = (0..8).map(|i| {
        let (catalog, p) = (catalog.clone(), p.clone());
        async move {
            if i % 2 == 0 {
                catalog.revoke_consent("s3", "t").await.map(|_| ())
            } else {
                let jti = format!("race-{i}");
                let g = grant("s3", &jti, &p, -5_000, 60_000);
                catalog.record_consent(&g).await.map(|_| ())
            }
        }
    });
    for r in futures_util::future::join_all(racers).await {
        r.unwrap();
    }
    assert!(matches!(
        catalog.consent_state("s3").await.unwrap(),
        ConsentState::Revoked { .. }
    ));
    // A token issued after them counts.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let after = grant("s3", "after", &p, 1, 60_000);
    assert_eq!(catalog.record_consent(&after).await.unwrap(), Ok(()));
    assert!(matches!(
        catalog.consent_state("s3").await.unwrap(),
        ConsentState::Live { .. }
    ));

    // s1's consent is live: nothing to record for it.
    assert_eq!(
        kinds(catalog.consent_history("s1").await.unwrap())
            .last()
            .unwrap(),
        "grant"
    );
}

/// The expiry sweeper's queries on a paused clock, across the default 30-day grace: a
/// lapse is recorded once it happened, and the subject comes up for erasure only after
/// the grace, unless consent was renewed, a hold is active, or the erasure has begun.
async fn lapse_sweep(catalog: Catalog) {
    let day = 86_400_000;
    let grace = 30 * day;
    let t0 = vcw::domain::clock::now_ms() + 365 * day;
    let clock = ManualClock::at(t0);
    let catalog = catalog.with_clock(clock.clone());
    let p = ["moderation".to_string()];
    let at = |s: &'static str, jti: &'static str, issued: i64, expires: i64| Grant {
        subject_hash: s,
        jti,
        issuer: "test",
        purposes: &p,
        issued_at: issued,
        expires_at: expires,
        actor: "t",
    };
    let hour = 3_600_000;
    // A year on, the earlier tests' subjects have lapsed too: recorded first.
    catalog.record_expiries(100).await.unwrap();
    for s in ["lapses", "renews", "held"] {
        let g = at(s, "g", t0, t0 + hour);
        assert_eq!(catalog.record_consent(&g).await.unwrap(), Ok(()));
    }
    let ours = ["held", "lapses", "renews"];
    let due = || async {
        let mut due = catalog.lapsed_for_erasure(grace, 100).await.unwrap();
        due.retain(|s| ours.contains(&s.as_str()));
        due.sort();
        due
    };
    assert_eq!(catalog.record_expiries(100).await.unwrap(), 0, "not yet");
    clock.advance(2 * hour);
    assert_eq!(catalog.record_expiries(100).await.unwrap(), 3);
    assert!(matches!(
        catalog.consent_state("lapses").await.unwrap(),
        ConsentState::Lapsed { .. }
    ));
    assert!(due().await.is_empty(), "within the grace");
    // Renewed a day later; held by an officer.
    clock.advance(day);
    let renewal = at("renews", "r", t0 + day, t0 + 90 * day);
    assert_eq!(catalog.record_consent(&renewal).await.unwrap(), Ok(()));
    assert!(
        catalog
            .set_hold("held", "litigation", "officer")
            .await
            .unwrap()
    );
    clock.advance(grace);
    assert_eq!(due().await, ["lapses"]);
    assert!(catalog.release_hold("held", "officer").await.unwrap());
    assert_eq!(due().await, ["held", "lapses"]);
    // Once an erasure has begun it is not offered again.
    catalog
        .begin_subject_erasure("lapses", "reaper")
        .await
        .unwrap();
    assert_eq!(due().await, ["held"]);
    assert_eq!(
        catalog.record_expiries(100).await.unwrap(),
        0,
        "each lapse once"
    );
}

/// A catalog that a newer vcw upgraded is refused, untouched, with an error that says why;
/// back at this build's version it opens again.
async fn newer_schema_is_refused(url: &str) {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let bump = |sql| sqlx::query(sql);
    bump("UPDATE schema_version SET version = version + 1")
        .execute(&mut conn)
        .await
        .unwrap();
    let err = Catalog::connect(url)
        .await
        .err()
        .expect("a newer schema is refused");
    assert!(matches!(err, CatalogError::NewerSchema { .. }), "{err}");
    assert!(err.to_string().contains("newer vcw"), "{err}");
    bump("UPDATE schema_version SET version = version - 1")
        .execute(&mut conn)
        .await
        .unwrap();
    Catalog::connect(url).await.unwrap();
}

#[test]
fn catalog_state_machine_and_races_on_sqlite_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring.toml");
    LocalKms::init(&keyring).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let catalog = Catalog::open(&dir.path().join("sqlite")).await.unwrap();
        state_machine(catalog.clone(), &keyring).await;
        consent_ledger(catalog.clone()).await;
        lapse_sweep(catalog).await;
        let sqlite = dir.path().join("sqlite/catalog.sqlite");
        newer_schema_is_refused(&format!("sqlite://{}", sqlite.display())).await;
    });
    let pg = Postgres::start(dir.path());
    rt.block_on(async {
        let catalog = Catalog::connect(&pg.url).await.unwrap();
        state_machine(catalog.clone(), &keyring).await;
        consent_ledger(catalog.clone()).await;
        lapse_sweep(catalog).await;
        newer_schema_is_refused(&pg.url).await;
    });
}
