//! include/hrm.h is cbindgen's output for src/lib.rs: this fails when the checked-in header is
//! stale, and `HRM_BLESS=1` rewrites it.

// A test reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;

#[test]
fn the_checked_in_header_is_cbindgens_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    // One source file, so cbindgen needs no `cargo metadata`.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses src/lib.rs");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include/hrm.h");
    if std::env::var_os("HRM_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/hrm.h");
        return;
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(
        current == generated,
        "capi/include/hrm.h is stale: run `HRM_BLESS=1 cargo test -p hrm-capi --test header` and commit it"
    );
}
