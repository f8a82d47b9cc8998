//! The C interface from C: tests/c/host.c, written against include/hrm.h alone, is compiled
//! with the cc crate and linked against this crate's libhrm.a; its answers must be the Rust
//! runtime's for the same blob, and under valgrind's memcheck it must run clean (every buffer
//! it hands the library is malloc'd to its exact size).

// A test reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hrm_runtime::ensemble::{self, Plan};
use hrm_runtime::{sudoku, Halting, Model, Session};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn blob_path() -> PathBuf {
    repo().join("models/sudoku/sudoku.blob")
}

/// libhrm.a of this build: cargo builds every crate type of the library for the tests, into the
/// test's own `deps/` folder (and copies them beside it when it builds the library alone).
fn static_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps/<test>");
    let candidates = [deps.join("libhrm.a"), deps.join("../libhrm.a")];
    let lib = candidates.iter().find(|p| p.is_file());
    lib.unwrap_or_else(|| panic!("libhrm.a is not in {}: cargo should have built the staticlib", deps.display()))
        .clone()
}

/// Compiles host.c (strict C99, warnings are errors) and links it against libhrm.a.
fn build_host(name: &str, extra_flags: &[&str]) -> PathBuf {
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let compiler =
        cc::Build::new().cargo_metadata(false).target(&triple).host(&triple).opt_level(1).debug(true).get_compiler();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let capi = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = compiler.to_command();
    cmd.args(["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror"])
        .args(extra_flags)
        .arg("-I")
        .arg(capi.join("include"))
        .arg(capi.join("tests/c/host.c"))
        .arg("-o")
        .arg(&out)
        .arg(static_library())
        // What a std staticlib needs from the system (`rustc --print native-static-libs`).
        .args(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"]);
    let output = cmd.output().expect("run the C compiler");
    assert!(
        output.status.success(),
        "compiling host.c failed: {:?} {:?}\n{}",
        cmd.get_program(),
        cmd.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// The puzzles of firmware-examples/puzzles.txt (ten), the first `n`.
fn puzzles(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("firmware-examples/puzzles.txt")).expect("puzzles.txt");
    text.lines()
        .map(|l| l.split(',').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .take(n)
        .map(str::to_owned)
        .collect()
}

/// The built-in blob with its header's segment count set to one (the runtime's own header
/// encoder; the payload and its CRC are unchanged): every call of the C program the same, an
/// eighth of the work under memcheck.
fn one_segment_blob() -> PathBuf {
    let mut bytes = std::fs::read(blob_path()).expect("read the built-in blob");
    let mut header = hrm_runtime::blob::Header::parse(&bytes).expect("a valid header");
    header.config.halt_max_steps = 1;
    bytes[..hrm_runtime::blob::HEADER_LEN].copy_from_slice(&header.encode());
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sudoku-one-segment.blob");
    std::fs::write(&path, bytes).expect("write the blob");
    path
}

/// The Rust runtime's answers for the same blob: the plain run, or the default ensemble of K.
fn rust_answers(puzzles: &[String], k: u32) -> Vec<String> {
    rust_answers_of(&blob_path(), puzzles, k)
}

fn rust_answers_of(blob: &Path, puzzles: &[String], k: u32) -> Vec<String> {
    let blob = hrm_host::AlignedBlob::read(blob).expect("read the blob");
    let model = Model::from_bytes(blob.as_bytes()).expect("valid blob");
    let mut arena = vec![0u32; model.arena_bytes().div_ceil(4)];
    let mut session = Session::new(model, bytemuck::cast_slice_mut(&mut arena)).expect("session");
    puzzles
        .iter()
        .map(|p| {
            let grid = sudoku::parse(p).expect("a valid puzzle");
            let answer = if k > 1 {
                ensemble::solve_sudoku(&mut session, &grid, &Plan::symmetries(k), |_, _| true).expect("ensemble").answer
            } else {
                session.reset(&sudoku::to_tokens(&grid), 0).expect("reset");
                session.run(Halting::Fixed).expect("run");
                let mut predictions = [0u32; sudoku::CELLS];
                session.predictions(&mut predictions).expect("predictions");
                sudoku::from_tokens(&predictions)
            };
            answer.iter().map(|&d| char::from(b'0' + d)).collect()
        })
        .collect()
}

fn write_puzzles(name: &str, puzzles: &[String]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    // A header line, a comment and a blank line too: the program skips them as `hrm solve` does.
    let text = format!("puzzle,solution\n# a comment\n\n{}\n", puzzles.join(",x\n"));
    std::fs::write(&path, text).expect("write the puzzles");
    path
}

fn run(command: &mut Command) -> Vec<String> {
    let output = command.output().expect("run the C host program");
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 answers").lines().map(str::to_owned).collect()
}

#[test]
fn a_c_program_gets_the_rust_runtimes_answers() {
    let host = build_host("host", &[]);
    let all = puzzles(10);
    assert_eq!(all.len(), 10);
    let file = write_puzzles("puzzles.csv", &all);
    let answers = run(Command::new(&host).arg(blob_path()).arg(&file));
    assert_eq!(answers, rust_answers(&all, 1));
    // The ensemble entry point: K = 4 on three puzzles.
    let three = write_puzzles("three.csv", &all[..3]);
    let answers = run(Command::new(&host).arg(blob_path()).arg(&three).arg("4"));
    assert_eq!(answers, rust_answers(&all[..3], 4));
}

#[test]
fn the_c_program_runs_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "valgrind is missing (.ci/run installs it)");
        eprintln!("SKIPPED: valgrind is not installed (apt-get install valgrind)");
        return;
    }
    let host = build_host("host-valgrind", &["-O0"]);
    // One puzzle, once (K = 1 given: no second pass by hand): memcheck runs the library about
    // fifty times slower.
    let one = puzzles(1);
    let file = write_puzzles("valgrind.csv", &one);
    let blob = one_segment_blob();
    let answers = run(Command::new("valgrind")
        .args(["--quiet", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite"])
        .arg(&host)
        .arg(&blob)
        .arg(&file)
        .arg("1"));
    assert_eq!(answers, rust_answers_of(&blob, &one, 1));
}
