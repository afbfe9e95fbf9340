//! Consent through `vcw serve`: tokens from configured issuers (ES256 with two keys in
//! rotation, RS256, EdDSA) and the local one, every way a token can be wrong answered
//! 401/403 with a reason, the ledger, and revocation: jobs stop, playback answers 403 at
//! once, a token from before the revocation is refused and one from after restores
//! consent. The server runs at debug level and its log never shows a subject or a token.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::serve::{Server, consent, is_final, send, state, token, wait_for};
use crate::util::{asset, ffmpeg, vcw};
use vcw::api::Role;

/// `openssl` key generation: (private PEM path, public PEM path).
fn keypair(dir: &Path, name: &str, genpkey: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let ok = Command::new("openssl")
        .arg("genpkey")
        .args(genpkey)
        .arg("-out")
        .arg(&private)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl genpkey {name}");
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl pkey {name}");
    (private, public)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A JWT with `claims`, signed by `key` (PEM) with `alg` and `kid`.
fn jwt(alg: Algorithm, kid: &str, key: &Path, claims: &Value) -> String {
    let pem = std::fs::read(key).unwrap();
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    }
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// Standard claims of the platform's consent service for `sub`.
fn claims(sub: &str) -> Value {
    json!({
        "iss": "https://consent.example",
        "sub": sub,
        "purposes": ["moderation", "analytics"],
        "iat": now() - 5,
        "exp": now() + 3600,
        "jti": format!("{sub}-{}", now()),
    })
}

/// PUT of a small clip with `consent` (when given): the status and the message.
fn put(s: &Server, up: &str, id: &str, clip: &[u8], consent: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = consent.map(|c| ("vcw-consent", c)).into_iter().collect();
    let url = s.url(&format!("/v1/videos/{id}"));
    let (status, _, body) = send("PUT", &url, Some(up), &headers, clip);
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, message)
}

#[test]
fn consent_tokens_are_verified_and_revocation_stops_playback() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    let (k1, k1_pub) = keypair(&keys, "es256-k1", &ec);
    let (k2, k2_pub) = keypair(&keys, "es256-k2", &ec);
    let (rsa, rsa_pub) = keypair(
        &keys,
        "rs256",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (ed, ed_pub) = keypair(&keys, "ed25519", &["-algorithm", "ed25519"]);
    let issuer = |kid: &str, alg: &str, public: &Path| {
        format!(
            "[[consent.issuers]]\niss = \"https://consent.example\"\nkid = \"{kid}\"\nalg = \"{alg}\"\npublic_key = \"{}\"\n",
            public.display()
        )
    };
    let config = dir.path().join("vcw.toml");
    std::fs::write(
        &config,
        [
            issuer("k1", "ES256", &k1_pub),
            issuer("k2", "ES256", &k2_pub),
            issuer("r1", "RS256", &rsa_pub),
            issuer("e1", "EdDSA", &ed_pub),
        ]
        .concat(),
    )
    .unwrap();
    let up = token(dir.path(), Role::Uploader);
    let reviewer = token(dir.path(), Role::Reviewer);
    let officer = token(dir.path(), Role::PrivacyOfficer);
    let data_dir = dir.path().to_str().unwrap();
    let s = Server::launch(
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
        ],
        dir.path(),
        "server.log",
        &[("RUST_LOG", "debug")],
    );
    let clip_path = dir.path().join("tiny.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=2:size=128x96:rate=10",
        "-pix_fmt",
        "yuv420p",
        clip_path.to_str().unwrap(),
    ]);
    let clip = std::fs::read(&clip_path).unwrap();
    let id = |n: u32| format!("{:032x}", 0xc0_0000 + n);
    let mut issued: Vec<String> = Vec::new();

    // --- every way a token can be wrong -------------------------------------------------
    let es256 = |key: &Path, kid: &str, c: &Value| jwt(Algorithm::ES256, kid, key, c);
    let with = |field: &str, value: Value| {
        let mut c = claims("alice");
        c[field] = value;
        c
    };
    let mut anonymous = claims("alice");
    anonymous.as_object_mut().unwrap().remove("sub");
    // A local token minted with another deployment's key.
    let foreign = vcw::consent::LocalIssuer::open_or_create(&keys.join("other.pem"))
        .unwrap()
        .issue("alice", &["moderation".to_string()], 600)
        .unwrap();
    let refused: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("no token", None, 401, "Vcw-Consent"),
        ("not a JWT", Some("not.a.jwt".into()), 401, "not a JWT"),
        (
            "expired",
            Some(es256(&k1, "k1", &with("exp", json!(now() - 1)))),
            401,
            "expired",
        ),
        (
            "another purpose",
            Some(es256(&k1, "k1", &with("purposes", json!(["analytics"])))),
            403,
            "\"moderation\"",
        ),
        (
            "unknown issuer",
            Some(es256(
                &k1,
                "k1",
                &with("iss", json!("https://elsewhere.example")),
            )),
            401,
            "issuer",
        ),
        (
            "k2's key claiming k1",
            Some(es256(&k2, "k1", &claims("alice"))),
            401,
            "signature",
        ),
        (
            "unknown kid",
            Some(es256(&k1, "k9", &claims("alice"))),
            401,
            "k9",
        ),
        (
            "issued in the future",
            Some(es256(&k1, "k1", &with("iat", json!(now() + 600)))),
            401,
            "not valid yet",
        ),
        ("no sub", Some(es256(&k1, "k1", &anonymous)), 401, "sub"),
        ("another deployment's local key", Some(foreign), 401, "kid"),
    ];
    for (what, token, status, reason) in &refused {
        let (got, why) = put(&s, &up, &id(1), &clip, token.as_deref());
        assert_eq!(got, *status, "{what}: {why}");
        assert!(why.contains(reason), "{what}: {why}");
    }

    // --- accepted: both rotated ES256 keys, RS256, EdDSA, and the local issuer ----------
    let mut ids = Vec::new();
    for (n, (alg, kid, key)) in [
        (Algorithm::ES256, "k1", &k1),
        (Algorithm::ES256, "k2", &k2),
        (Algorithm::RS256, "r1", &rsa),
        (Algorithm::EdDSA, "e1", &ed),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = claims("alice");
        c["jti"] = json!(format!("alice-{n}"));
        let t = jwt(alg, kid, key, &c);
        let (status, why) = put(&s, &up, &id(10 + n as u32), &clip, Some(&t));
        assert_eq!(status, 202, "{alg:?} {kid}: {why}");
        issued.push(t);
        ids.push(id(10 + n as u32));
    }
    let local = consent(dir.path(), "alice");
    assert_eq!(put(&s, &up, &id(14), &clip, Some(&local)).0, 202);
    issued.push(local);
    for v in &ids {
        assert_eq!(state(&wait_for(&s, &up, v, 120, is_final)), "done");
    }
    let playlist = s.url(&format!("/v1/videos/{}/playlist.m3u8", ids[0]));
    let (status, headers, _) = send("GET", &playlist, Some(&reviewer), &[], b"");
    assert_eq!(status, 200);
    let cache = headers["cache-control"].to_str().unwrap();
    assert!(
        cache.contains("no-store"),
        "personal data is not cached on the way: {cache}"
    );

    // --- revocation -----------------------------------------------------------------------
    // A long job of alice, running when consent is withdrawn, is stopped.
    let long = id(20);
    let long_clip = std::fs::read(asset("samples/generated/longgop.mp4")).unwrap();
    assert_eq!(put(&s, &up, &long, &long_clip, Some(&issued[0])).0, 202);
    wait_for(&s, &up, &long, 120, |v| state(v) == "running");
    let revoke = s.url("/v1/subjects/alice/consent");
    let bob = consent(dir.path(), "bob");
    issued.push(bob.clone());
    let (status, _, body) = send("DELETE", &revoke, Some(&up), &[("vcw-consent", &bob)], b"");
    assert_eq!(
        status,
        403,
        "bob's token cannot revoke alice: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        send("DELETE", &revoke, Some(&reviewer), &[], b"").0,
        403,
        "role"
    );
    let (status, headers, body) = send("DELETE", &revoke, Some(&officer), &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["cache-control"], "no-store", "on every answer");
    let revocation: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(revocation["jobs_cancelled"], 1, "{revocation}");
    let revoked_at = revocation["at_ms"].as_i64().unwrap();
    // From the answer on: nothing of alice is served, and her old tokens are refused.
    let (status, _, body) = send("GET", &playlist, Some(&reviewer), &[], b"");
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("revoked"));
    let segment = s.url(&format!("/v1/videos/{}/segments/0.m4s", ids[0]));
    assert_eq!(send("GET", &segment, Some(&reviewer), &[], b"").0, 403);
    let (status, why) = put(&s, &up, &id(30), &clip, Some(&issued[1]));
    assert_eq!((status, why.contains("revoked")), (403, true), "{why}");
    assert_eq!(state(&wait_for(&s, &up, &long, 120, is_final)), "cancelled");
    // Bob is untouched.
    assert_eq!(put(&s, &up, &id(31), &clip, Some(&bob)).0, 202);

    // A token issued after the revocation (next second: `iat` has second precision)
    // grants consent again.
    while now() * 1000 <= revoked_at {
        std::thread::sleep(Duration::from_millis(100));
    }
    let fresh = consent(dir.path(), "alice");
    issued.push(fresh.clone());
    assert_eq!(put(&s, &up, &id(32), &clip, Some(&fresh)).0, 202);
    assert_eq!(send("GET", &playlist, Some(&reviewer), &[], b"").0, 200);

    // The ledger: append-only, in order.
    let out = vcw()
        .args(["consent", "show", "alice", "--data-dir", data_dir])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ledger: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = ledger.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"grant"));
    assert_eq!(
        kinds.iter().filter(|k| **k == "revoke").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&"grant"),
        "consent granted again: {kinds:?}"
    );
    assert!(
        kinds[1..kinds.len() - 2].iter().all(|k| *k == "renew"),
        "{kinds:?}"
    );

    // `vcw consent revoke` (the catalog directly) takes effect on the running service.
    let out = vcw()
        .args(["consent", "revoke", "alice", "--data-dir", data_dir])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(send("GET", &playlist, Some(&reviewer), &[], b"").0, 403);

    // Data-subject access: alice's videos, her ledger, the audit records about her.
    let (status, _, body) = send(
        "GET",
        &s.url("/v1/subjects/alice"),
        Some(&officer),
        &[],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let held: Value = serde_json::from_slice(&body).unwrap();
    let videos = held["videos"].as_array().unwrap();
    assert_eq!(videos.len(), 7, "{held}");
    assert!(videos.iter().any(|v| v["state"] == "cancelled"), "{held}");
    assert_eq!(
        held["consent"]["history"].as_array().unwrap().len(),
        kinds.len() + 1
    );
    let audited: Vec<&str> = held["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for action in [
        "consent.grant",
        "consent.revoke",
        "video.read.playlist",
        "subject.access",
    ] {
        assert!(audited.contains(&action), "{action} in {audited:?}");
    }
    let (status, _, _) = send(
        "GET",
        &s.url("/v1/subjects/alice"),
        Some(&up),
        &[("vcw-consent", &bob)],
        b"",
    );
    assert_eq!(status, 403, "bob's token does not open alice's data");

    // Nothing personal in the log, at debug level: no subject, no token.
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("DEBUG"), "the log ran at debug level");
    for secret in ["alice", "bob"].iter().map(|s| s.to_string()).chain(issued) {
        assert!(!log.contains(&secret), "the log shows {secret:?}");
    }
}

/// A 2 s 128x96 clip in `dir`.
fn tiny_clip(dir: &Path) -> Vec<u8> {
    let path = dir.join("tiny.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=2:size=128x96:rate=10",
        "-pix_fmt",
        "yuv420p",
        path.to_str().unwrap(),
    ]);
    std::fs::read(path).unwrap()
}

/// Portability, then erasure of a data subject: suspended (409, with the reason) while a legal hold is
/// active, for the subject and for each video; once released, every video is erased and
/// the subject key shredded, and the answer is a receipt that verifies offline with the
/// deployment's public key and fails once altered.
#[test]
fn subject_export_and_erasure_with_a_signed_receipt_and_a_legal_hold() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let up = token(d, Role::Uploader);
    let reviewer = token(d, Role::Reviewer);
    let officer = token(d, Role::PrivacyOfficer);
    let s = Server::start(d, &[]);
    let clip = tiny_clip(d);
    let carol = consent(d, "carol");
    let ids = [
        "ca401000000000000000000000000001",
        "ca401000000000000000000000000002",
    ];
    for id in ids {
        assert_eq!(put(&s, &up, id, &clip, Some(&carol)).0, 202);
    }
    for id in ids {
        assert_eq!(state(&wait_for(&s, &up, id, 120, is_final)), "done");
    }
    // Portability: carol's own archive, with carol's token; every video plays from it
    // frame for frame as uploaded.
    let export = s.url("/v1/subjects/carol/export");
    let dave = consent(d, "dave");
    let (status, ..) = send("GET", &export, Some(&up), &[("vcw-consent", &dave)], b"");
    assert_eq!(status, 403, "another subject's token");
    let (status, headers, archive) =
        send("GET", &export, Some(&up), &[("vcw-consent", &carol)], b"");
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-tar");
    assert_eq!(
        headers["content-length"],
        archive.len().to_string().as_str()
    );
    let unpacked = d.join("export");
    tar::Archive::new(&archive[..]).unpack(&unpacked).unwrap();
    let report: Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("subject.json")).unwrap()).unwrap();
    assert_eq!(report["videos"].as_array().unwrap().len(), 2, "{report}");
    assert!(!report["consent"]["history"].as_array().unwrap().is_empty());
    let source = crate::util::md5s(d.join("tiny.mp4").to_str().unwrap(), "v:0", false, None);
    assert_eq!(source.len(), 20);
    for id in ids {
        let playlist = unpacked.join(format!("videos/{id}/playlist.m3u8"));
        let frames = crate::util::md5s(playlist.to_str().unwrap(), "v:0", false, None);
        assert_eq!(frames, source, "{id}");
    }
    let listed = report["archive"]["files"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        7,
        "playlist, init and one segment each, and the audit trail: {listed:?}"
    );

    // The archive's audit trail is every record about carol, past the first page that
    // subject.json carries: 1,200 more records, and the archive has them all, in order,
    // up to and with the record of this export.
    let carol_hash = report["subject_hash"].as_str().unwrap().to_string();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let catalog = vcw::catalog::Catalog::open(&s.dir).await.unwrap();
        for i in 0..1200 {
            let entry = vcw::domain::audit::Entry::about_subject(
                "test",
                "subject.access",
                &carol_hash,
                &format!("record {i}"),
            );
            catalog.audit(entry).await.unwrap();
        }
    });
    let (status, _, archive) = send("GET", &export, Some(&up), &[("vcw-consent", &carol)], b"");
    assert_eq!(status, 200);
    let records = archived_audit(&archive);
    assert!(records.len() > 1200 + 4, "{} records", records.len());
    assert!(records.iter().all(|r| r["subject"] == carol_hash.as_str()));
    let seqs: Vec<i64> = records.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
    let added = records.iter().filter(|r| r["actor"] == "test").count();
    assert_eq!(added, 1200);
    let last = records.last().unwrap();
    assert_eq!(last["action"], "subject.export", "{last}");
    assert_eq!(
        records
            .iter()
            .filter(|r| r["action"] == "subject.export")
            .count(),
        2,
        "both exports"
    );

    let subject = s.url("/v1/subjects/carol");
    let hold = s.url("/v1/subjects/carol/hold");
    let body = br#"{"reason": "litigation 42"}"#;
    let json = [("content-type", "application/json")];
    assert_eq!(send("PUT", &hold, Some(&officer), &json, body).0, 200);
    let (status, _, answer) = send("DELETE", &subject, Some(&officer), &[], b"");
    assert_eq!(status, 409);
    assert!(String::from_utf8_lossy(&answer).contains("litigation 42"));
    let video = s.url(&format!("/v1/videos/{}", ids[0]));
    let (status, _, answer) = send("DELETE", &video, Some(&officer), &[], b"");
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&answer));
    // The uploader may ask for carol with carol's token, not release a hold.
    assert_eq!(send("DELETE", &hold, Some(&up), &[], b"").0, 403);
    assert_eq!(send("DELETE", &hold, Some(&officer), &[], b"").0, 200);

    let (status, _, answer) = send(
        "DELETE",
        &subject,
        Some(&up),
        &[("vcw-consent", &carol)],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let receipt: Value = serde_json::from_slice(&answer).unwrap();
    let erasure = &receipt["body"]["erasure"];
    assert_eq!(erasure["videos"].as_array().unwrap().len(), 2, "{receipt}");
    assert_eq!(erasure["subject_key_shredded"], true, "{receipt}");
    assert!(
        erasure["objects_deleted"].as_u64().unwrap() >= 6,
        "{receipt}"
    );
    for id in ids {
        let (status, ..) = send(
            "GET",
            &s.url(&format!("/v1/videos/{id}/playlist.m3u8")),
            Some(&reviewer),
            &[],
            b"",
        );
        assert_eq!(status, 410);
        assert!(crate::serve::stored_files(d, &format!("videos/{id}")).is_empty());
    }
    let (_, _, held) = send("GET", &subject, Some(&officer), &[], b"");
    let mut held: Value = serde_json::from_slice(&held).unwrap();
    assert_eq!(held["erasure_receipt"], receipt, "the receipt is kept");
    assert!(held["legal_hold"].is_null());
    // Audit records come in pages (carol's fill two); after the last there are none but
    // the access just recorded.
    let mut pages = 1;
    while let Some(next) = held["audit_next"].as_i64() {
        let page = s.url(&format!("/v1/subjects/carol?audit_after={next}"));
        let (status, _, body) = send("GET", &page, Some(&officer), &[], b"");
        assert_eq!(status, 200);
        held = serde_json::from_slice(&body).unwrap();
        pages += 1;
    }
    assert_eq!(pages, 2);
    let records = held["audit"].as_array().unwrap();
    assert!(records.len() >= 5, "{held}");
    let last = records.last().unwrap()["seq"].as_i64().unwrap();
    let page = s.url(&format!("/v1/subjects/carol?audit_after={last}"));
    let (status, _, body) = send("GET", &page, Some(&officer), &[], b"");
    assert_eq!(status, 200);
    let next: Value = serde_json::from_slice(&body).unwrap();
    let actions: Vec<&str> = (next["audit"].as_array().unwrap().iter())
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["subject.access"], "{next}");
    let bad = s.url("/v1/subjects/carol?page=2");
    assert_eq!(send("GET", &bad, Some(&officer), &[], b"").0, 400);

    // Offline: the receipt verifies with the public key; altered, it does not.
    let key = vcw()
        .args(["audit", "key", "--data-dir", d.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(key.status.success());
    let key_file = d.join("audit.pub");
    std::fs::write(&key_file, &key.stdout).unwrap();
    let verify = |receipt: &Value| {
        let file = d.join("receipt.json");
        std::fs::write(&file, serde_json::to_string_pretty(receipt).unwrap()).unwrap();
        vcw()
            .args(["audit", "verify-receipt"])
            .arg(&file)
            .arg("--key")
            .arg(&key_file)
            .args(["--data-dir", d.to_str().unwrap()])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(verify(&receipt), Some(0));
    let mut altered = receipt.clone();
    altered["body"]["erasure"]["videos"] = json!([ids[0]]);
    assert_eq!(verify(&altered), Some(2));
}

/// Consent that lapses is recorded as expired and, after `consent.erase_after_lapse_days`
/// (here about 2 s), the reaper erases the subject with a receipt: the whole service, in
/// real time. The sweeper's queries over the default 30 days, on a paused clock, are in
/// `catalog.rs` (`lapse_sweep`).
#[test]
fn lapsed_consent_is_erased_after_its_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let up = token(d, Role::Uploader);
    let reviewer = token(d, Role::Reviewer);
    let officer = token(d, Role::PrivacyOfficer);
    let s = Server::start(
        d,
        &[
            ("VCW__SERVER__REAPER_SECONDS", "0.2"),
            ("VCW__CONSENT__ERASE_AFTER_LAPSE_DAYS", "0.00002"),
        ],
    );
    let clip = tiny_clip(d);
    let short = vcw::consent::LocalIssuer::open_or_create(&d.join("consent-issuer.pem"))
        .unwrap()
        .issue("dave", &["moderation".to_string()], 8)
        .unwrap();
    let id = "da7e0000000000000000000000000001";
    assert_eq!(put(&s, &up, id, &clip, Some(&short)).0, 202);
    assert_eq!(state(&wait_for(&s, &up, id, 60, is_final)), "done");
    let subject = s.url("/v1/subjects/dave");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let held = loop {
        let (_, _, body) = send("GET", &subject, Some(&officer), &[], b"");
        let held: Value = serde_json::from_slice(&body).unwrap();
        if !held["erasure_receipt"].is_null() {
            break held;
        }
        assert!(std::time::Instant::now() < deadline, "not erased: {held}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let kinds: Vec<&str> = held["consent"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["grant", "expire", "revoke"], "{held}");
    assert_eq!(held["erasure_receipt"]["body"]["erasure"]["videos"][0], id);
    let (status, ..) = send(
        "GET",
        &s.url(&format!("/v1/videos/{id}/playlist.m3u8")),
        Some(&reviewer),
        &[],
        b"",
    );
    assert_eq!(status, 410);
}

/// Two at once: audit records about a subject keep arriving while its archive is
/// exported. Each archive is whole (its `Content-Length`, a readable tar) and its audit
/// trail is a consistent cut: strictly increasing, only that subject's records, and every
/// export made before it.
#[test]
fn an_archive_exported_while_the_audit_trail_grows_is_whole_and_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let officer = token(d, Role::PrivacyOfficer);
    let s = Server::start(d, &[]);
    let (status, _, body) = send("GET", &s.url("/v1/subjects/erin"), Some(&officer), &[], b"");
    assert_eq!(status, 200);
    let erin: Value = serde_json::from_slice(&body).unwrap();
    let erin_hash = erin["subject_hash"].as_str().unwrap().to_string();
    // Writes records until the exports are done; says when the first hundred are in.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (started, running) = std::sync::mpsc::channel();
    let writer = {
        let (data, erin_hash, done) = (s.dir.clone(), erin_hash.clone(), done.clone());
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                let catalog = vcw::catalog::Catalog::open(&data).await.unwrap();
                let mut written = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) && written < 20_000 {
                    let entry = vcw::domain::audit::Entry::about_subject(
                        "test",
                        "subject.access",
                        &erin_hash,
                        &format!("record {written}"),
                    );
                    catalog.audit(entry).await.unwrap();
                    written += 1;
                    if written == 100 {
                        started.send(()).unwrap();
                    }
                }
                written
            })
        })
    };
    running.recv().unwrap();
    let export = s.url("/v1/subjects/erin/export");
    for round in 1..=4 {
        let (status, headers, archive) = send("GET", &export, Some(&officer), &[], b"");
        assert_eq!(status, 200);
        assert_eq!(
            headers["content-length"],
            archive.len().to_string().as_str()
        );
        let records = archived_audit(&archive);
        assert!(records.iter().all(|r| r["subject"] == erin_hash.as_str()));
        let seqs: Vec<i64> = records.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "round {round}");
        let exports = records
            .iter()
            .filter(|r| r["action"] == "subject.export")
            .count();
        assert_eq!(exports, round, "every export so far, this one included");
        let written = records.iter().filter(|r| r["actor"] == "test").count();
        assert!(
            written >= 100,
            "round {round}: {written} of the writer's records"
        );
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 100, "the writer kept writing: {written}");
}

/// The records of a portability archive's `audit.jsonl`.
fn archived_audit(archive: &[u8]) -> Vec<Value> {
    let mut audit = String::new();
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("audit.jsonl") {
            std::io::Read::read_to_string(&mut entry, &mut audit).unwrap();
        }
    }
    audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
