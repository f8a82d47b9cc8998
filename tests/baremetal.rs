//! The runtime builds for bare-metal Cortex-M targets with nothing but `core`: the proof that it
//! is `no_std` and allocation-free, not just marked so.
//!
//! rustup's toolchain here has no bare-metal targets and no `rust-src`; Debian's `rustc-web`
//! (installed by `.ci/run`) can build `core` for any target (`-Z build-std=core`).

use std::path::Path;
use std::process::Command;

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";

fn build(targets: &[&str]) {
    if !Path::new(DEBIAN_RUSTC).exists() || !Path::new(DEBIAN_CARGO).exists() {
        let message = format!(
            "the Debian Rust toolchain ({DEBIAN_RUSTC}) is missing, so the {targets:?} builds cannot run; \
             install it with: apt-get install rustc-web cargo-web rust-web-src"
        );
        if std::env::var_os("CI").is_some() {
            panic!("{message}");
        }
        hrm_tests::loud(&format!("SKIPPED: {message}"));
        return;
    }
    let root = hrm_tests::repo_root();
    let output = Command::new(DEBIAN_CARGO)
        .current_dir(&root)
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTDOC", "/usr/bin/rustdoc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("LD_LIBRARY_PATH")
        .args(["build", "--locked", "--release", "-p", "hrm-runtime", "-Z", "build-std=core"])
        .args(targets.iter().flat_map(|t| ["--target", t]))
        .arg("--target-dir")
        .arg(root.join("target/baremetal"))
        .output()
        .expect("run Debian cargo");
    assert!(
        output.status.success(),
        "hrm-runtime does not build for {targets:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for target in targets {
        let rlib = root.join("target/baremetal").join(target).join("release/libhrm_runtime.rlib");
        assert!(rlib.is_file(), "{} was not produced", rlib.display());
    }
}

/// One cargo run for every target, so that cargo spreads their crates over the cores (three runs
/// in one target directory wait on each other's lock): the Cortex-M4F (DSP kernels), the M0
/// instruction set, and aarch64 without an OS (the NEON matrix kernels compile; they cannot run
/// here).
#[test]
fn runtime_builds_for_cortex_m4f_m0_and_aarch64() {
    build(&["thumbv7em-none-eabihf", "thumbv6m-none-eabi", "aarch64-unknown-none"]);
}
