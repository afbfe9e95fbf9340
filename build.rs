//! Embeds the dashboard's HLS player (hls.js, installed from npm by `make setup` into
//! dashboard/node_modules). Without it the build still succeeds: the dashboard then
//! plays HLS only where the browser does natively, and says so.

use std::path::Path;

fn main() {
    let vendored = Path::new("dashboard/node_modules/hls.js/dist/hls.light.min.js");
    println!("cargo:rerun-if-changed={}", vendored.display());
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("hls.js");
    let script = std::fs::read(vendored).unwrap_or_else(|_| {
        println!(
            "cargo:warning=hls.js is not installed (run `make setup`): the dashboard's player will rely on native HLS"
        );
        b"window.Hls = undefined;\n".to_vec()
    });
    std::fs::write(&out, script).expect("OUT_DIR is writable");
}
