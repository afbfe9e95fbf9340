//! The OpenAPI document against the server it describes: schemathesis (PyPI, pinned in
//! tests/schemathesis/requirements.txt) runs its coverage, fuzzing and stateful phases
//! against `vcw serve` with an admin token. Every answer must be documented, every
//! schema-valid request accepted (or refused only for who the caller is or what does not
//! exist), every schema-violating one rejected, and nothing may be a server error.

use std::process::Command;

use crate::serve::{Server, token};
use crate::util::repo;
use vcw::api::Role;

#[test]
fn schemathesis_finds_the_document_exact() {
    let dir = tempfile::tempdir().unwrap();
    let admin = token(dir.path(), Role::Admin);
    // Its requests come fast; the rate limit has its own test.
    let s = Server::start(
        dir.path(),
        &[
            ("VCW__SERVER__RATE_PER_SECOND", "100000"),
            ("VCW__SERVER__RATE_BURST", "100000"),
        ],
    );
    let st = repo().join(".cache/stvenv/bin/st");
    let config = repo().join("tests/schemathesis");
    let out = Command::new(&st)
        .arg("--config-file")
        .arg(config.join("schemathesis.toml"))
        .args(["run", &s.url("/openapi.json"), "--seed", "1"])
        .args(["--max-examples", "30", "--no-color"])
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        // Its example database goes there too, not into the checkout.
        .current_dir(dir.path())
        .env("PYTHONPATH", &config)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .output()
        .unwrap_or_else(|e| panic!("{} ({e}): make test's setup installs it", st.display()));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = said
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or("");
    assert!(summary.contains(" passed"), "{said}");
    eprintln!("schemathesis: {}", summary.trim());
}
