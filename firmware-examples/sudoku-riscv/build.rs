//! Puts the memory map (memory.x: QEMU virt's RAM) and the model blob (`HRM_BLOB`, as for
//! sudoku-uart) where the build finds them.

use std::path::PathBuf;
use std::{env, fs, process};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=memory.x");
    if let Err(e) = fs::copy("memory.x", out.join("memory.x")) {
        eprintln!("error: cannot read memory.x: {e}");
        process::exit(1);
    }
    println!("cargo:rustc-link-search={}", out.display());
    // riscv-rt's link.x expects the memory regions to be defined first.
    println!("cargo:rustc-link-arg=-Tmemory.x");
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rerun-if-env-changed=HRM_BLOB");
    let Some(blob) = env::var_os("HRM_BLOB").map(PathBuf::from) else {
        eprintln!("error: set HRM_BLOB to the model blob (scripts/firmware.sh build does)");
        process::exit(1);
    };
    println!("cargo:rerun-if-changed={}", blob.display());
    if let Err(e) = fs::copy(&blob, out.join("model.blob")) {
        eprintln!("error: cannot read the model blob {} (HRM_BLOB): {e}", blob.display());
        process::exit(1);
    }
}
