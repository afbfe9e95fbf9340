//! `vcw doctor` passes on a good install (a data directory `vcw serve` made) and names
//! the fix on broken ones: a missing model, a keyring others can read, a catalog that
//! does not answer.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::serve::Server;
use crate::util::{repo, vcw};

/// `vcw doctor --json` against `data_dir`: exit code and the checks.
fn doctor(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, Vec<Value>) {
    let out = vcw()
        .args(["doctor", "--json", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let checks: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().unwrap(),
        checks.as_array().unwrap().clone(),
    )
}

/// The failed checks: (name, detail, fix).
fn failures(checks: &[Value]) -> Vec<(String, String, String)> {
    checks
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("detail"), s("fix"))
        })
        .collect()
}

#[test]
fn doctor_passes_a_good_install_and_names_each_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = Server::start(d, &[]);
    let (code, checks) = doctor(d, &[], &[]);
    assert_eq!(code, 0, "{checks:?}");
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for name in [
        "ffmpeg", "onnx", "model", "sm4", "keyring", "catalog", "clock", "queue", "store", "disk",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let ffmpeg = checks.iter().find(|c| c["name"] == "ffmpeg").unwrap();
    assert!(
        ffmpeg["detail"].as_str().unwrap().contains("licence"),
        "{ffmpeg}"
    );
    drop(s);

    // A model missing.
    let models = d.join("models");
    std::fs::create_dir(&models).unwrap();
    for entry in std::fs::read_dir(repo().join("models")).unwrap().flatten() {
        if entry.file_name() != "320n.onnx" {
            std::os::unix::fs::symlink(entry.path(), models.join(entry.file_name())).unwrap();
        }
    }
    let (code, checks) = doctor(d, &["--models-dir", models.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    let failed = failures(&checks);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].1.contains("320n.onnx") && failed[0].2.contains("make models"),
        "{failed:?}"
    );

    // A keyring others can read.
    let keyring = d.join("keyring.toml");
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, checks) = doctor(d, &[], &[]);
    assert_eq!(code, 2);
    let failed = failures(&checks);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].2, format!("chmod 600 {}", keyring.display()));
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A catalog that does not answer (nothing listens on port 1).
    let url = [(
        "VCW__CLUSTER__DATABASE_URL",
        "postgres://vcw@127.0.0.1:1/vcw",
    )];
    let (code, checks) = doctor(d, &[], &url);
    assert_eq!(code, 2);
    let failed = failures(&checks);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "catalog");
    assert!(failed[0].2.contains("cluster.database_url"), "{failed:?}");

    // A catalog a newer vcw upgraded: refused, with the way back.
    let catalog = format!("sqlite://{}", d.join("catalog.sqlite").display());
    let set_version = |sql: &'static str| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection as _;
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&catalog).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        });
    };
    set_version("UPDATE schema_version SET version = version + 1");
    let (code, checks) = doctor(d, &[], &[]);
    set_version("UPDATE schema_version SET version = version - 1");
    assert_eq!(code, 2);
    let failed = failures(&checks);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].1.contains("newer vcw"), "{failed:?}");
    assert!(
        failed[0].2.contains("restore the catalog's backup"),
        "{failed:?}"
    );
    assert_eq!(doctor(d, &[], &[]).0, 0, "back to this vcw's version");
}

/// `vcw doctor` names the SM4 path sealing uses, honours `VCW_SM4_IMPL`, and fails
/// with a fix when it names a path that does not exist.
#[test]
fn doctor_reports_the_sm4_path() {
    let dir = tempfile::tempdir().unwrap();
    let sm4 = |env: &[(&str, &str)]| {
        let (_, checks) = doctor(dir.path(), &[], env);
        checks.into_iter().find(|c| c["name"] == "sm4").unwrap()
    };
    let best = sm4(&[]);
    assert_eq!(best["ok"], true, "{best}");
    assert!(
        best["detail"].as_str().unwrap().contains("constant-time"),
        "{best}"
    );

    let forced = sm4(&[("VCW_SM4_IMPL", "portable")]);
    assert_eq!(forced["ok"], true, "{forced}");
    let detail = forced["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("portable") && detail.contains("forced"),
        "{forced}"
    );

    let bogus = sm4(&[("VCW_SM4_IMPL", "tables")]);
    assert_eq!(bogus["ok"], false, "{bogus}");
    assert!(
        bogus["fix"].as_str().unwrap().contains("portable"),
        "{bogus}"
    );
}
