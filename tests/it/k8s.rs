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
}
