#!/usr/bin/env bash
# Fuzzing with cargo fuzz (libFuzzer): the blob parser and one inference segment, the checkpoint
# readers (safetensors, PyTorch zip, configs), and the puzzle / maze / ARC / serial-line parsers.
# Target bodies live in tests/src/fuzzing.rs; inputs that ever crashed go to
# tests/fixtures/fuzz/TARGET/, where `cargo test` replays them.
#
#   scripts/fuzz.sh seed                 write the seed corpora (fuzz/corpus/TARGET)
#   scripts/fuzz.sh run TARGET SECONDS   fuzz one target
#   scripts/fuzz.sh ci [SECONDS]         every target for SECONDS (default 60), two at a time;
#                                        what CI runs
#
# cargo fuzz needs nightly flags: RUSTC_BOOTSTRAP=1 lets the stable toolchain take them. The
# targets are built without a sanitizer (`-s none`): the code is safe Rust, and the executions
# per second are what finds bugs; debug assertions (overflow checks) stay on.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
# candle captures a backtrace in every error it makes (and its pickle reader prints the errors
# it skips): with backtraces on, the `pytorch` target spends its time unwinding. Panics keep
# theirs (RUST_BACKTRACE).
export RUST_LIB_BACKTRACE=0
TARGETS=(blob blob_resealed safetensors pytorch configs puzzles)

# A debug build: cargo-fuzz only drives cargo and the fuzzer, and builds in half the time.
need_cargo_fuzz() {
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --debug --version 0.13.2
}

# The seed writer is the example that `cargo test` builds (tests/examples/fuzz_seeds.rs). It is
# run from there, found through cargo's artifact messages, because `cargo run -p hrm-tests`
# builds it with other features (those of hrm-tests alone) and RUSTC_BOOTSTRAP (set above for
# cargo fuzz) changes every fingerprint: either rebuilt candle and the rest, four minutes in CI.
seed() {
  local exe
  exe="$(env -u RUSTC_BOOTSTRAP cargo test --locked --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*/examples/fuzz_seeds[^"]*"' | head -n 1 | sed 's/^"executable":"//; s/"$//')"
  [ -x "$exe" ] || {
    echo "fuzz: cargo test --no-run did not build the fuzz_seeds example" >&2
    return 1
  }
  "$exe" fuzz/corpus
}

# Runs one target; prints "TARGET EXECS SECONDS" and fails on a finding.
run() {
  local target="$1" seconds="$2" log="fuzz/artifacts/$1.log"
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  # Checkpoints are mostly tensor bytes: keep mutated files small so the reader runs often
  # (the seeds stay under this size; see tests/examples/fuzz_seeds.rs).
  local extra=()
  if [ "$target" = pytorch ]; then extra=(-max_len=131072); fi
  set +e
  (cd fuzz && cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
    "${extra[@]}" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 \
    -artifact_prefix="artifacts/$target/") > "$log" 2>&1
  local status=$?
  set -e
  # -a: candle's pickle reader prints the raw bytes it rejects, so the log is not always text.
  local execs cov
  execs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  cov=$(grep -aoE 'cov: [0-9]+' "$log" | tail -1 | grep -o '[0-9]*' || true)
  echo "$target execs=${execs:-?} seconds=$seconds coverage=${cov:-?}"
  if [ $status -ne 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz: $target found a problem; the input is in fuzz/artifacts/$target/ (copy it to tests/fixtures/fuzz/$target/)" >&2
    return 1
  fi
}

case "${1:-}" in
  seed) seed ;;
  run)
    need_cargo_fuzz
    run "${2:?target}" "${3:-60}"
    ;;
  ci)
    started=$SECONDS
    need_cargo_fuzz
    seed
    echo "fuzz: cargo-fuzz and the seeds in $((SECONDS - started)) s"
    started=$SECONDS
    (cd fuzz && cargo fuzz build --sanitizer none)
    echo "fuzz: targets built in $((SECONDS - started)) s"
    # Two targets at a time, one per core: each still fuzzes its full time, CI waits half as long.
    failed=0
    for ((i = 0; i < ${#TARGETS[@]}; i += 2)); do
      pids=()
      for t in "${TARGETS[@]:i:2}"; do
        run "$t" "${2:-60}" &
        pids+=($!)
      done
      for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    done
    [ $failed -eq 0 ] || exit 1
    ;;
  *)
    sed -n '2,13p' "$0" >&2
    exit 2
    ;;
esac
