//! Puts the memory map and the model blob where the build finds them.
//!
//! The blob is an input of the build: `HRM_BLOB` names it (an absolute path, or one relative to
//! this crate; `.cargo/config.toml` points at `../target/firmware/sudoku.blob`, which
//! `scripts/firmware.sh` makes). It is copied into `OUT_DIR` and `include_bytes!`'d from there,
//! so a changed blob or a changed `HRM_BLOB` rebuilds the firmware.

use std::path::PathBuf;
use std::{env, fs, process};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // The memory map: the MPS2 boards QEMU emulates (the AN505's with the `mps2-an505`
    // feature, the MPS3 AN547's with `mps3-an547`), or HRM_MEMORY_X (e.g. one of ../boards/*.x, to see whether the linker fits the
    // model into a real board's flash and RAM).
    println!("cargo:rerun-if-env-changed=HRM_MEMORY_X");
    let default_map = if env::var_os("CARGO_FEATURE_MPS2_AN505").is_some() {
        "memory-an505.x"
    } else if env::var_os("CARGO_FEATURE_MPS3_AN547").is_some() {
        "memory-an547.x"
    } else {
        "memory.x"
    };
    let memory = env::var_os("HRM_MEMORY_X").map_or_else(|| PathBuf::from(default_map), PathBuf::from);
    println!("cargo:rerun-if-changed={}", memory.display());
    if let Err(e) = fs::copy(&memory, out.join("memory.x")) {
        eprintln!("error: cannot read the memory map {}: {e}", memory.display());
        process::exit(1);
    }
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=build.rs");

    println!("cargo:rerun-if-env-changed=HRM_BLOB");
    let Some(blob) = env::var_os("HRM_BLOB").map(PathBuf::from) else {
        eprintln!("error: set HRM_BLOB to the model blob to put in flash (scripts/firmware.sh build does)");
        process::exit(1);
    };
    println!("cargo:rerun-if-changed={}", blob.display());
    if let Err(e) = fs::copy(&blob, out.join("model.blob")) {
        eprintln!("error: cannot read the model blob {} (HRM_BLOB): {e}", blob.display());
        eprintln!("       make it with: scripts/firmware.sh blob");
        process::exit(1);
    }

    if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg=-Tdefmt.x");
    }
}
