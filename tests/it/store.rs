//! `vcw scan --store`: the whole job. Segments are sealed into the store, decrypt into a
//! playable HLS set, and die with the subject's key.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::{asset, ffprobe_duration, run_json, vcw};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn scan_store_seals_segments_that_decrypt_into_a_playable_hls_set() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keyring = dir.path().join("keyring.toml");
    let store = dir.path().join("store");
    let vault = |cmd: &mut Command| {
        cmd.arg("--data-dir")
            .arg(&data)
            .arg("--keyring")
            .arg(&keyring);
    };
    let mut init = vcw();
    init.args(["keys", "init"]);
    vault(&mut init);
    assert!(init.status().unwrap().success());

    let src = asset("samples/bikes.mp4");
    let mut cmd = vcw();
    cmd.args(["scan", "--store", s(&store), "--subject", "user-1234"])
        .arg(&src);
    vault(&mut cmd);
    let run = run_json(&mut cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let stored: &Value = &run.docs[0]["stored"];
    let segments = stored["segments"].as_array().unwrap();
    assert!(segments.len() >= 2, "{stored}");
    assert!(
        !stored.to_string().contains("user-1234"),
        "raw subject never in the manifest"
    );

    // Nothing plaintext in the store: only sealed objects, no playlist text.
    for entry in walk(&store) {
        let bytes = std::fs::read(&entry).unwrap();
        assert_eq!(&bytes[..8], b"VCWSEAL1", "{}", entry.display());
        assert!(!String::from_utf8_lossy(&bytes).contains("#EXTM3U"));
    }

    // Decrypt everything and play it back as HLS with ffprobe.
    let out = dir.path().join("hls");
    std::fs::create_dir(&out).unwrap();
    let open = |key: &str, dest: &Path| {
        let mut cmd = vcw();
        cmd.args(["open", s(&store.join(key)), s(dest)]);
        vault(&mut cmd);
        cmd.output().unwrap()
    };
    for seg in segments {
        let key = seg["key"].as_str().unwrap();
        let name = format!("seg-{:05}.m4s", seg["index"].as_u64().unwrap());
        let o = open(key, &out.join(name));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(stored["segment_format"], "fmp4");
    let o = open(
        stored["init"]["key"].as_str().unwrap(),
        &out.join("init.mp4"),
    );
    assert!(o.status.success());
    let o = open(
        stored["playlist"]["key"].as_str().unwrap(),
        &out.join("playlist.m3u8"),
    );
    assert!(o.status.success());
    let o = open(
        stored["manifest_key"].as_str().unwrap(),
        &out.join("manifest.json"),
    );
    assert!(o.status.success());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["video_id"], stored["video_id"]);

    let duration = ffprobe_duration(&out.join("playlist.m3u8"));
    assert!(
        (duration - 10.0).abs() <= 5.0,
        "HLS duration {duration} vs 10 s source (GOP 5 s)"
    );
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(out.join("playlist.m3u8"))
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decode.stderr)
    );

    // Erasure: after the subject is shredded, no segment opens.
    let mut shred = vcw();
    shred.args(["keys", "shred", "--subject", "user-1234"]);
    vault(&mut shred);
    let shredded = shred.output().unwrap();
    assert!(
        shredded.status.success(),
        "{}",
        String::from_utf8_lossy(&shredded.stderr)
    );
    let o = open(segments[0]["key"].as_str().unwrap(), &out.join("again.m4s"));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("shredded"));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn scan_store_to_s3_and_read_back_ranges_through_the_store() {
    use vcw::storage::{BlobStore, StoredSource};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(crate::storage::s3s_server::S3sServer::start());
    let store = rt.block_on(server.store("vcw-videos", "uploads"));
    let config = server.config();
    let dir = tempfile::tempdir().unwrap();
    let (data, keyring) = (dir.path().join("data"), dir.path().join("keyring.toml"));
    let vault_args = |cmd: &mut Command| {
        cmd.arg("--data-dir")
            .arg(&data)
            .arg("--keyring")
            .arg(&keyring);
        cmd.env("VCW__S3__ENDPOINT", config.endpoint.as_deref().unwrap())
            .env("VCW__S3__ACCESS_KEY", config.access_key.as_deref().unwrap())
            .env(
                "VCW__S3__SECRET_KEY",
                config.secret_key.as_ref().unwrap().expose(),
            )
            .env("VCW__S3__PATH_STYLE", "true");
    };
    let mut init = vcw();
    init.args(["keys", "init"]);
    vault_args(&mut init);
    assert!(init.output().unwrap().status.success());

    let src = asset("samples/carphone_pristine.mp4");
    let mut cmd = vcw();
    cmd.args([
        "scan",
        "--store",
        "s3://vcw-videos/uploads",
        "--subject",
        "s3-user",
    ])
    .arg(&src);
    vault_args(&mut cmd);
    let run = run_json(&mut cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let stored = &run.docs[0]["stored"];
    assert!(
        stored["store"]
            .as_str()
            .unwrap()
            .starts_with("s3://vcw-videos/uploads")
    );

    rt.block_on(async {
        let vault = vcw::vault::Vault::load(&keyring, &data).await.unwrap();
        let keys = store.list("videos/").await.unwrap();
        assert_eq!(
            keys.len(),
            stored["segments"].as_array().unwrap().len() + 3,
            "{keys:?}"
        );
        let seg = stored["segments"][0]["key"].as_str().unwrap();
        let id = |v: &serde_json::Value| vcw::domain::parse_id(v.as_str().unwrap()).unwrap();
        let seg_id = id(&stored["segments"][0]["object_id"]);
        // The whole segment, streamed from S3, checked to be the object the manifest names.
        let mut plain = Vec::new();
        vault
            .open(store.get(seg).await.unwrap(), Some(&seg_id), &mut plain)
            .await
            .unwrap();
        // The playlist's reference does not open the segment put in its place.
        let playlist_id = id(&stored["playlist"]["object_id"]);
        let swapped = vault
            .open(
                store.get(seg).await.unwrap(),
                Some(&playlist_id),
                Vec::new(),
            )
            .await;
        assert!(
            matches!(swapped, Err(vcw::vault::VaultError::WrongObject { .. })),
            "{swapped:?}"
        );
        assert!(
            plain.windows(4).any(|w| w == b"moof"),
            "an fMP4 media segment"
        );
        // A range through S3 Range GETs equals the same slice.
        let source = StoredSource::new(&store, seg).await.unwrap();
        let mut part = Vec::new();
        vault
            .open_range(&source, Some(&seg_id), 70_000, 70_999, &mut part)
            .await
            .unwrap();
        assert_eq!(part, &plain[70_000..71_000]);
    });
}
