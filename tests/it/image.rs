//! The container image: `scripts/image` (what `make image` runs) builds it from the vcw
//! this test suite built, with buildah and a debootstrap root; then `vcw scan` runs inside
//! it (`buildah run`) and gives the verdict it gives outside; it runs as uid 10001 with
//! vcw as its entrypoint; and the k8s base names the tag `make image` produces.

use std::process::Command;

use serde_json::Value;

use crate::util::{asset, repo};

const TAG: &str = "localhost/vcw:test";

fn buildah(args: &[&str]) -> String {
    let out = Command::new("buildah")
        .args(args)
        .env("STORAGE_DRIVER", "vfs")
        .env("BUILDAH_ISOLATION", "chroot")
        .output()
        .expect("buildah is installed (make test's setup)");
    assert!(
        out.status.success(),
        "buildah {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_image_builds_and_scans_like_the_binary() {
    let built = Command::new(repo().join("scripts/image"))
        .arg(env!("CARGO_BIN_EXE_vcw"))
        .arg(TAG)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&built.stdout).to_string()
        + &String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "scripts/image failed:\n{said}");
    eprintln!("{}", said.trim());

    let config: Value =
        serde_json::from_str(&buildah(&["inspect", "--type", "image", TAG])).unwrap();
    let oci = &config["OCIv1"]["config"];
    assert_eq!(oci["User"], "10001:10001");
    assert_eq!(oci["Entrypoint"], serde_json::json!(["/usr/local/bin/vcw"]));

    let sample = asset("samples/bikes.mp4");
    let outside = Command::new(env!("CARGO_BIN_EXE_vcw"))
        .args(["--json", "scan"])
        .arg(&sample)
        .output()
        .unwrap();
    let outside: Value = serde_json::from_slice(&outside.stdout).unwrap();

    let ctr = buildah(&["from", TAG]);
    let samples = format!("{}:/samples:ro", sample.parent().unwrap().display());
    let inside = Command::new("buildah")
        .env("STORAGE_DRIVER", "vfs")
        .env("BUILDAH_ISOLATION", "chroot")
        .args(["run", "-v", &samples, &ctr, "--"])
        .args(["/usr/local/bin/vcw", "--json", "scan", "/samples/bikes.mp4"])
        .output()
        .unwrap();
    let whoami = buildah(&["run", &ctr, "--", "/usr/bin/id", "-u"]);
    buildah(&["rm", &ctr]);
    let inside: Value = serde_json::from_slice(&inside.stdout).unwrap_or_else(|_| {
        panic!(
            "vcw scan in the image: {}",
            String::from_utf8_lossy(&inside.stderr)
        )
    });
    assert_eq!(whoami, "10001");
    assert!(inside["verdict"].is_string(), "{inside}");
    assert_eq!(inside["verdict"], outside["verdict"]);
    assert_eq!(inside["sampled"], outside["sampled"]);

    // The k8s base names what `make image` tags: localhost/vcw:<version>.
    let kustomization =
        std::fs::read_to_string(repo().join("k8s/base/kustomization.yaml")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        kustomization.contains("newName: localhost/vcw")
            && kustomization.contains(&format!("newTag: {version}")),
        "k8s/base/kustomization.yaml must name localhost/vcw:{version}"
    );
    buildah(&["rmi", TAG]);
}
