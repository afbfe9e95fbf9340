//! The kustomize base and overlay render with the real kustomize (kubectl from PyPI) and
//! validate against the Kubernetes and KEDA schemas plus our policy checks
//! (scripts/validate-k8s); a broken manifest is caught.

use std::process::Command;

use crate::util::repo;

fn validate(args: &[&str]) -> (bool, String) {
    let out = Command::new(repo().join("scripts/validate-k8s"))
        .args(args)
        .output()
        .expect("scripts/validate-k8s runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn manifests_validate_and_broken_ones_fail() {
    let (ok, text) = validate(&[]);
    assert!(ok, "{text}");
    assert!(text.contains("0 problems"), "{text}");

    // A copy of the base, broken twice.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    std::fs::create_dir(&base).unwrap();
    for entry in std::fs::read_dir(repo().join("k8s/base"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(entry.path(), base.join(entry.file_name())).unwrap();
    }
    // Policy: the worker running as root.
    let worker = base.join("worker-deployment.yaml");
    let text = std::fs::read_to_string(&worker).unwrap();
    assert!(text.contains("runAsNonRoot: true"));
    std::fs::write(
        &worker,
        text.replace("runAsNonRoot: true", "runAsNonRoot: false"),
    )
    .unwrap();
    let (ok, out) = validate(&[base.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("runAsNonRoot"), "{out}");
    // Schema: a string replica count.
    let api = base.join("api-deployment.yaml");
    let text = std::fs::read_to_string(&api).unwrap();
    let broken = text.replacen("replicas: 2", "replicas: \"two\"", 1);
    assert_ne!(broken, text, "api Deployment sets replicas: 2");
    std::fs::write(&api, broken).unwrap();
    let (ok, out) = validate(&[base.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("'two' is not of type"), "{out}");
    // Metrics: a worker Prometheus would not scrape (policy checks run once the schema
    // errors are gone).
    std::fs::write(&api, text).unwrap();
    let text = std::fs::read_to_string(&worker).unwrap();
    let broken = text.replace(
        "prometheus.io/scrape: \"true\"",
        "prometheus.io/scrape: \"false\"",
    );
    assert_ne!(broken, text, "the worker is scraped");
    std::fs::write(&worker, broken).unwrap();
    let (ok, out) = validate(&[base.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("(Prometheus scraping)"), "{out}");
}

/// Every `VCW__…` setting the manifests pass is one vcw accepts (it refuses unknown keys
/// at start, which in a cluster would be a crash loop).
#[test]
fn manifest_settings_are_valid_vcw_configuration() {
    let text = std::fs::read_to_string(repo().join("k8s/base/kustomization.yaml")).unwrap();
    let mut env: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- VCW__"))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (format!("VCW__{k}"), v.to_string()))
        .collect();
    for f in ["api-deployment.yaml", "worker-deployment.yaml"] {
        let text = std::fs::read_to_string(repo().join("k8s/base").join(f)).unwrap();
        let mut lines = text.lines().map(str::trim);
        while let Some(l) = lines.next() {
            if let Some(name) = l.strip_prefix("- name: VCW__")
                && let Some(value) = lines.next().and_then(|v| v.strip_prefix("value: "))
            {
                env.push((format!("VCW__{name}"), value.trim_matches('"').to_string()));
            }
        }
    }
    assert!(env.len() >= 8, "{env:?}");
    let config =
        vcw::config::Config::load(None, env.clone()).unwrap_or_else(|e| panic!("{e}: {env:?}"));
    assert!(config.cluster.nats_url.is_some() && config.cluster.database_url.is_some());
    assert!(
        config
            .server
            .store
            .as_deref()
            .is_some_and(|s| s.starts_with("s3://"))
    );
}
