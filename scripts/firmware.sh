#!/usr/bin/env bash
# The firmware examples (firmware-examples/): install their toolchain, build them, run them under
# QEMU with the UART on stdin/stdout, check their answers against the host's `hrm solve`, and
# measure them. Needs nothing but Debian's packages and crates.io; see firmware-examples/README.md.
#
#   scripts/firmware.sh setup                      install rustc-web, lld, QEMU (when missing)
#   scripts/firmware.sh blob                       make the model blob (target/firmware/sudoku.blob)
#   scripts/firmware.sh build EXAMPLE [--features defmt]
#   scripts/firmware.sh run EXAMPLE [--features defmt] < puzzles.txt
#   scripts/firmware.sh log EXAMPLE < puzzles.txt  run the defmt build, decode its log to stderr
#   scripts/firmware.sh check                      what CI runs: firmware answers == host answers
#                                                  (f32 on the M4F, with defmt, soft float on the
#                                                  M3 with the tiny model), the int8, f32 and
#                                                  f16 kernels of the M4F, M7 and M33 on odd
#                                                  shapes, cores, the gate on cores' runs, the
#                                                  f32 build's board fit, nofloat
#   scripts/firmware.sh cores                      the same answers and segment digests on x86-64,
#                                                  the M0 set, M3, M4F, M7, M33, RISC-V (fixed
#                                                  point), M4F, M7 and M33 (int8); the gate's figures
#   scripts/firmware.sh nofloat                    no floating-point routine reachable from the
#                                                  integer forward pass (thumbv6m call graph)
#   scripts/firmware.sh gate                       cores, then its instructions per segment, flash
#                                                  and RAM against gate-baseline.txt (2 %);
#                                                  GATE_WRITE=1 writes the baseline
#   scripts/firmware.sh measure                    sizes, arena, stack, instructions, board fit
#   scripts/firmware.sh fit                        the board fit alone
#   scripts/firmware.sh profile EXAMPLE [--features F]
#                                                  one puzzle's instructions by function (inlined
#                                                  code counted where it was inlined from)
#
# EXAMPLE: sudoku-uart (Cortex-M4F, hard float, QEMU mps2-an386), sudoku-uart-m3 (Cortex-M3,
# soft float, mps2-an385), -m7, -m33 (mps2-an505), -m55 (mps3-an547), -m0, sudoku-riscv, or
# c-uart (the C firmware on the M4F). HRM_BLOB=path uses that blob instead of making one; MODEL=path
# converts another checkpoint; WEIGHTS=f16|bf16|int8|int4 stores the weights narrower;
# WEIGHTS=fixed makes the integer-only blob (int8 weights, fixed-point activations calibrated on
# 256 generated puzzles: target/firmware/sudoku-fixed.blob); ELF_TAG=name keeps a build's ELF
# apart (target/firmware/EXAMPLE-name.elf); MEASURE_WEIGHTS="f32 fixed" chooses measure's blobs
# (default: f32 f16 int8 int4 fixed); HRM=path uses that host `hrm` instead of building
# target/release/hrm.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FW="$ROOT/firmware-examples"
OUT="$ROOT/target/firmware"
# The model in flash: what `hrm convert` reads (a checkpoint directory, or a weights file with
# all_config.yaml and dataset.json beside it). By default the model built into `hrm`.
MODEL="${MODEL:-$ROOT/models/sudoku/model.safetensors}"
WEIGHTS="${WEIGHTS:-f32}"
# The runtime's work block: 4 by default (the SwiGLUs take four rows at once, so the DSP
# extension's 4 × 4 tiles extend each weight word once for four rows; 6 KiB more RAM than 1),
# 8 for f16 weights (each pair of weight rows is widened to f32 once per block: 11 % fewer
# instructions than at 4, 8 KiB more RAM, 128,768 bytes, still within the STM32F407's 128 KiB
# of SRAM); BLOCK=1 keeps the arena smallest (the weights are read once per row, from flash).
BLOCK="${BLOCK:-}"
# The host's `hrm`, built here (release) unless HRM names one already built.
HRM_GIVEN="${HRM:-}"
HRM="${HRM:-$ROOT/target/release/hrm}"

say() { echo "firmware: $*" >&2; }
die() {
  echo "firmware: error: $*" >&2
  exit 1
}

usage() {
  awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# ---------------------------------------------------------------------------------------------
# Toolchain

toolchain_ok() {
  [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library/core ] &&
    command -v ld.lld-22 >/dev/null && command -v qemu-system-arm >/dev/null &&
    command -v qemu-system-riscv32 >/dev/null &&
    command -v gcc >/dev/null && command -v size >/dev/null && command -v nm >/dev/null
}

setup() {
  if ! toolchain_ok; then
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    say "installing Debian's Rust (rustc-web), lld-22, QEMU, gcc and binutils"
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      rustc-web cargo-web rust-web-src lld-22 qemu-system-arm qemu-system-misc gcc libc6-dev binutils
  fi
  toolchain_ok || die "the toolchain is still incomplete after installing"
  # Debian's security updates replace the package: ask for a version, not a revision.
  local version
  version="$(/usr/bin/rustc --version | awk '{print $2}')"
  case "$version" in
    1.[0-8][0-9].* | 1.9[0-5].*) die "/usr/bin/rustc is $version; the firmware needs 1.96 or newer (rustc-web)" ;;
  esac
}

# Debian's cargo and rustc, whatever rustup's environment says, in workspace DIR.
debian_cargo() {
  local dir="$1"
  shift
  (cd "$dir" && env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET \
    -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER \
    RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 /usr/bin/cargo "$@")
}
fw_cargo() { debian_cargo "$FW" "$@"; }

# The C firmware's compiler and C library: Debian's arm-none-eabi GCC and newlib.
c_setup() {
  if ! command -v arm-none-eabi-gcc >/dev/null || ! [ -d /usr/include/newlib ]; then
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    say "installing Debian's gcc-arm-none-eabi and libnewlib-arm-none-eabi"
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      gcc-arm-none-eabi libnewlib-arm-none-eabi libnewlib-dev
  fi
  command -v arm-none-eabi-gcc >/dev/null || die "arm-none-eabi-gcc is still missing after installing"
}

# ---------------------------------------------------------------------------------------------
# The host side: `hrm` and the blob

host_hrm() {
  if [ -n "$HRM_GIVEN" ]; then
    [ -x "$HRM" ] || die "HRM=$HRM is not an executable"
  elif [ -z "${HRM_BUILT:-}" ]; then
    say "building the host's hrm (release)"
    (cd "$ROOT" && cargo build --release --locked --bin hrm >&2)
    HRM_BUILT=1
  fi
}

# Sets BLOB: $HRM_BLOB if given, else target/firmware/sudoku[-WEIGHTS][-blockN].blob (N when not
# 4), converted from $MODEL when missing or older than the model, the converter,
# the calibration set or this script.
blob() {
  if [ -n "${HRM_BLOB:-}" ]; then
    BLOB="$(cd "$(dirname "$HRM_BLOB")" && pwd)/$(basename "$HRM_BLOB")"
    [ -f "$BLOB" ] || die "HRM_BLOB=$HRM_BLOB is not a file"
    return
  fi
  host_hrm
  mkdir -p "$OUT"
  BLOB="$OUT/${BLOB_NAME:-sudoku}.blob"
  if [ "$WEIGHTS" != f32 ]; then BLOB="$OUT/${BLOB_NAME:-sudoku}-$WEIGHTS.blob"; fi
  local block="${BLOCK:-4}"
  if [ -z "$BLOCK" ] && [ "$WEIGHTS" = f16 ]; then block=8; fi
  if [ "$block" != 4 ]; then BLOB="${BLOB%.blob}-block$block.blob"; fi
  local args=(--weights "$WEIGHTS") calibrate=""
  if [ -n "${MODEL_CONFIG:-}" ]; then args+=(--config "$MODEL_CONFIG"); fi
  case "$WEIGHTS" in
    f32 | f16 | bf16 | int8 | int4) ;;
    fixed)
      # int8 weights, fixed-point activations: the integer-only forward pass, whose formats
      # are calibrated on task data (256 generated puzzles; never the evaluation seeds).
      calibration
      calibrate="$CALIBRATION"
      args=(--weights int8 --activations fixed --calibrate "$calibrate")
      ;;
    *) die "unknown WEIGHTS=$WEIGHTS (f32, f16, bf16, int8, int4, fixed)" ;;
  esac
  # Also remade when this script is newer: its defaults (the work block) are the blob's settings.
  if [ ! -f "$BLOB" ] || [ "$MODEL" -nt "$BLOB" ] || [ "$HRM" -nt "$BLOB" ] || [ "$ROOT/scripts/firmware.sh" -nt "$BLOB" ] ||
    { [ -n "${MODEL_CONFIG:-}" ] && [ "$MODEL_CONFIG" -nt "$BLOB" ]; } ||
    { [ -n "$calibrate" ] && [ "$calibrate" -nt "$BLOB" ]; }; then
    "$HRM" convert "$MODEL" --out "$BLOB" "${args[@]}" --block "$block" >&2
  fi
}

# Sets CALIBRATION: the fixed-point blob's calibration set, target/firmware/calibrate-sudoku.csv
# (256 puzzles with 35 givens, seed 7), generated when missing or older than `hrm`.
calibration() {
  CALIBRATION="$OUT/calibrate-sudoku.csv"
  if [ ! -f "$CALIBRATION" ] || [ "$HRM" -nt "$CALIBRATION" ]; then
    "$HRM" generate sudoku --givens 35 --count 256 --seed 7 --out "$CALIBRATION" >&2
  fi
}

# ---------------------------------------------------------------------------------------------
# Examples

# Sets TARGET, MACHINE, CPU, PACKAGE, FEATURES, ELF for "EXAMPLE [--features LIST]".
example() {
  [ $# -ge 1 ] || usage
  case "$1" in
    sudoku-uart) TARGET=thumbv7em-none-eabihf MACHINE=mps2-an386 CPU=cortex-m4 ;;
    sudoku-uart-m3) TARGET=thumbv7m-none-eabi MACHINE=mps2-an385 CPU=cortex-m3 ;;
    # The M7 board of the same family (same memory map and UART), the M4F's build.
    sudoku-uart-m7) TARGET=thumbv7em-none-eabihf MACHINE=mps2-an500 CPU=cortex-m7 ;;
    # The M0 instruction set (ARMv6-M): no QEMU board for an M0 has room for the model, so the
    # thumbv6m image runs on the M3 board, executing only M0 instructions.
    sudoku-uart-m0) TARGET=thumbv6m-none-eabi MACHINE=mps2-an385 CPU=cortex-m3 ;;
    # Armv8-M mainline with the DSP extension and an FPU: the AN505 image (TrustZone; the
    # firmware runs secure), its own memory map and device addresses (feature mps2-an505).
    sudoku-uart-m33) TARGET=thumbv8m.main-none-eabihf MACHINE=mps2-an505 CPU=cortex-m33 ;;
    # Armv8.1-M (Cortex-M55, SSE-300): the MPS3 AN547 image, built with -C target-cpu=cortex-m55
    # (with a fixed-point blob the runtime's Helium kernels, feature helium), its own memory map
    # (512 KiB of ITCM for code: the integer and int8 blobs fit, f32 does not) and device
    # addresses (feature mps3-an547).
    sudoku-uart-m55) TARGET=thumbv8m.main-none-eabihf MACHINE=mps3-an547 CPU=cortex-m55 ;;
    # RV32IMAC (ESP32-C3 class, no FPU): QEMU virt, its 16550 UART; for the integer-only blob.
    sudoku-riscv) TARGET=riscv32imac-unknown-none-elf MACHINE=virt CPU="" ;;
    # The same solver in C (firmware-examples/c-uart) over libhrm.a, the C interface.
    c-uart) TARGET=thumbv7em-none-eabihf MACHINE=mps2-an386 CPU=cortex-m4 ;;
    *) die "unknown example '$1' (sudoku-uart, sudoku-uart-m3, sudoku-uart-m7, sudoku-uart-m33, sudoku-uart-m55, sudoku-uart-m0, sudoku-riscv, c-uart)" ;;
  esac
  NAME="$1"
  PACKAGE=sudoku-uart
  if [ "$1" = sudoku-riscv ] || [ "$1" = c-uart ]; then PACKAGE="$1"; fi
  FEATURES=""
  # Features the board needs, added to FEATURES by build (not part of the ELF's tag).
  BOARD_FEATURES=""
  if [ "$1" = sudoku-uart-m33 ]; then BOARD_FEATURES=mps2-an505; fi
  if [ "$1" = sudoku-uart-m55 ]; then BOARD_FEATURES=mps3-an547; fi
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --features) FEATURES="${2:?--features needs a list}" && shift 2 ;;
      --features=*) FEATURES="${1#--features=}" && shift ;;
      *) die "unknown option '$1'" ;;
    esac
  done
  # One copy per example, feature set and blob, so that builds never overwrite each other's.
  local tag="$NAME"
  if [ -n "$FEATURES" ]; then tag="$tag+${FEATURES//,/+}"; fi
  if [ -n "${ELF_TAG:-}" ]; then tag="$tag-$ELF_TAG"; fi
  ELF="$OUT/$tag.elf"
}

# Whether BLOB has fixed-point activations. Only then does sudoku-uart link the runtime's
# integer path (its default feature `fixed-point`); a float blob's build leaves it out
# (`--no-default-features`: about 45 KB less flash).
blob_is_fixed() { "$HRM" inspect "$BLOB" | awk '$1 == "activations" {print $2}' | grep -qx fixed; }

build() {
  local started=$SECONDS
  example "$@"
  setup
  blob
  if [ "$PACKAGE" = c-uart ]; then
    build_c
    say "built $NAME in $((SECONDS - started)) s"
    return
  fi
  say "building $NAME ($TARGET${FEATURES:+, features $FEATURES}) with $(basename "$BLOB")"
  local args=(build --release --locked -p "$PACKAGE" --target "$TARGET")
  if [ "$PACKAGE" = sudoku-uart ] && ! blob_is_fixed; then args+=(--no-default-features); fi
  local board_features="$BOARD_FEATURES" target_dir="$FW/target"
  if [ "$NAME" = sudoku-uart-m55 ]; then
    # The M55's own code generation (-C target-cpu=cortex-m55, passed below) in a target
    # directory of its own, so that it and the M33's build do not rebuild each other; with a
    # fixed-point blob, the runtime's Helium kernels for the integer path.
    target_dir="$FW/target/m55"
    args+=(--target-dir "$target_dir")
    if blob_is_fixed; then board_features="$board_features,helium"; fi
  fi
  local features="${FEATURES}${FEATURES:+${board_features:+,}}${board_features}"
  if [ -n "$features" ]; then args+=(--features "$features"); fi
  if [ "$NAME" = sudoku-uart-m55 ]; then
    HRM_BLOB="$BLOB" CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_RUSTFLAGS="-C target-cpu=cortex-m55" \
      fw_cargo "${args[@]}" >&2
  else
    HRM_BLOB="$BLOB" fw_cargo "${args[@]}" >&2
  fi
  mkdir -p "$OUT"
  cp "$target_dir/$TARGET/release/$PACKAGE" "$ELF"
  say "built $NAME${FEATURES:+ ($FEATURES)} in $((SECONDS - started)) s"
}

# c-uart: libhrm.a (hrm-capi without std, from the main workspace) for the M4F, then the C
# sources compiled and linked with it, newlib (nano) and libgcc. The arena's size is the blob
# header's (a u64 at byte 88), so the C code declares it static.
build_c() {
  c_setup
  [ -z "$FEATURES" ] || die "c-uart has no features"
  local lib_dir="$ROOT/target/firmware-capi" arena
  say "building libhrm.a (hrm-capi) for $TARGET"
  # `rustc --crate-type staticlib`: a bare-metal target has no cdylib.
  debian_cargo "$ROOT" rustc --release --locked -p hrm-capi --no-default-features --target "$TARGET" \
    --crate-type staticlib -Z build-std=core,compiler_builtins --target-dir "$lib_dir" >&2
  arena="$(od -An -t u8 -j 88 -N 8 "$BLOB" | tr -d ' ')"
  say "building $NAME with $(basename "$BLOB") (arena $arena bytes)"
  mkdir -p "$OUT"
  arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2 -g -std=gnu11 \
    -Wall -Wextra -Werror -ffunction-sections -fdata-sections -I "$ROOT/capi/include" \
    -DHRM_ARENA_BYTES="$arena" -DHRM_BLOB_FILE="\"$BLOB\"" \
    "$FW/c-uart/startup.c" "$FW/c-uart/main.c" "$FW/c-uart/blob.S" -T "$FW/c-uart/link.ld" \
    -nostartfiles --specs=nano.specs -Wl,--gc-sections -Wl,--no-warn-execstack \
    "$lib_dir/$TARGET/release/libhrm.a" -lc -lgcc -o "$ELF"
}

qemu() {
  # -serial stdio: UART0 on stdin/stdout; semihosting carries the exit status (and the defmt
  # frames, on stderr); -monitor none keeps QEMU's monitor off the terminal. RISC-V: the ELF
  # loaded into RAM without firmware (-bios none), the exit status through sifive_test.
  if [ "$MACHINE" = virt ]; then
    qemu-system-riscv32 -machine virt -bios none -nographic -monitor none -serial stdio "$@" -kernel "$ELF"
    return
  fi
  qemu-system-arm -machine "$MACHINE" -cpu "$CPU" -nographic -monitor none -serial stdio \
    -semihosting-config enable=on,target=native "$@" -kernel "$ELF"
}

# Runs the built example on stdin, then the end marker (EOT); exits with the firmware's status.
run() {
  build "$@"
  set +e
  { cat; printf '\004'; } | qemu
  local status=$?
  set -e
  return "$status"
}

# Runs the defmt build: answers on stdout, the decoded log on stderr.
log() {
  [ $# -eq 1 ] || usage
  command -v defmt-print >/dev/null ||
    die "decoding needs defmt-print: cargo install defmt-print --locked (about 4 minutes)"
  build "$1" --features defmt
  local frames="$OUT/$NAME.defmt" status=0
  { cat; printf '\004'; } | qemu 2>"$frames" || status=$?
  defmt-print -e "$ELF" <"$frames" >&2
  return "$status"
}

# ---------------------------------------------------------------------------------------------
# check: the firmware's answers are the host's

# The session every full check sends: puzzles 1-5, then lines that must be refused or skipped
# (malformed.txt, whose answers malformed.expected gives), then puzzles 6-10, the last two with
# CRLF endings. session_input N writes it with the first N puzzles only (N < 10: the first
# puzzle, the malformed lines, then puzzles 2..N, the last with a CRLF ending);
# session_expected HOST N the answers to it
# from the host's answer lines HOST.
session_input() {
  local n="$1" puzzles="$FW/puzzles.txt"
  if [ "$n" -ge 10 ]; then
    head -n 5 "$puzzles"
    cat "$FW/malformed.txt"
    sed -n '6,8p' "$puzzles"
    sed -n '9,10p' "$puzzles" | sed 's/$/\r/'
  else
    head -n 1 "$puzzles"
    cat "$FW/malformed.txt"
    sed -n "2,${n}p" "$puzzles" | sed '$s/$/\r/'
  fi
}
session_expected() {
  local host="$1" n="$2"
  if [ "$n" -ge 10 ]; then
    head -n 5 "$host"
    cat "$FW/malformed.expected"
    sed -n '6,10p' "$host"
  else
    head -n 1 "$host"
    cat "$FW/malformed.expected"
    sed -n "2,${n}p" "$host"
  fi
}

# The tiny Sudoku model of the golden fixtures (tests/fixtures/golden/hrm-sudoku-tiny: 75 M
# multiply-accumulates a segment, against 134 M for the built-in model), cut to one segment
# (halt_max_steps 1, target/firmware/tiny-config.yaml): the soft-float M3 runs the f32
# arithmetic on it, about 37 s a segment under QEMU here, instead of over 3 minutes a puzzle.
TINY_MODEL="$ROOT/tests/fixtures/golden/hrm-sudoku-tiny"
tiny_config() {
  TINY_CONFIG="$OUT/tiny-config.yaml"
  mkdir -p "$OUT"
  sed 's/^\( *halt_max_steps:\).*/\1 1/' "$TINY_MODEL/all_config.yaml" >"$TINY_CONFIG.new"
  if cmp -s "$TINY_CONFIG.new" "$TINY_CONFIG"; then rm "$TINY_CONFIG.new"; else mv "$TINY_CONFIG.new" "$TINY_CONFIG"; fi
}

# Runs example NAME (with ELF_TAG, WEIGHTS, FEATURES as `run` takes them) on INPUT and compares
# its UART output with EXPECTED; sets RESULT (ok or FAIL) and RESULT_LINE, and leaves the run's
# ELF, BLOB and TARGET set. With COUNT=1 the run is counted with the instruction plugin (to
# $work/TAG.count). Called as a plain command, so that a failing build still stops the script.
check_one() { # NAME INPUT EXPECTED [--features F]
  build "$1" "${@:4}"
  check_run "$@"
}

# check_one without the build (the ELF is already built): sets the example's globals again and
# runs it. What cores runs two at a time, in subshells, once every ELF is built.
check_run() { # NAME INPUT EXPECTED [--features F]
  local name="$1" input="$2" expected="$3" tag="$1"
  shift 3
  if [ $# -gt 0 ]; then tag="$name+${2//,/+}"; fi
  if [ -n "${ELF_TAG:-}" ]; then tag="$tag-$ELF_TAG"; fi
  local started=$SECONDS status=0
  rm -f "$work/$tag.out" "$work/$tag.diff" "$work/$tag.count"
  example "$name" "$@"
  blob
  set +e
  if [ "${COUNT:-}" = 1 ]; then
    { cat "$input"; printf '\004'; } | qemu -plugin "$PLUGIN,out=$work/$tag.count" >"$work/$tag.out" 2>"$work/$tag.err"
  else
    { cat "$input"; printf '\004'; } | qemu >"$work/$tag.out" 2>"$work/$tag.err"
  fi
  status=$?
  set -e
  RESULT=FAIL
  if [ "$status" -ne 0 ]; then
    RESULT_LINE="$tag: exit status $status (see $work/$tag.err)"
  elif ! diff -u "$expected" "$work/$tag.out" >"$work/$tag.diff"; then
    RESULT_LINE="$tag: answers differ from the host's (see $work/$tag.diff): $(head -n 12 "$work/$tag.diff" | tail -n +3 | tr '\n' ' ')"
  else
    RESULT=ok
    RESULT_LINE="$tag ($TARGET on $MACHINE): $(wc -l <"$work/$tag.out") lines identical to the host's, exit 0 ($((SECONDS - started)) s)"
  fi
}

# check's bookkeeping: the last check_one's line to stderr, counted.
note() {
  if [ "$RESULT" = ok ]; then
    say "ok   $RESULT_LINE"
    passed=$((passed + 1))
  else
    say "FAIL $RESULT_LINE"
    failed=$((failed + 1))
  fi
}

check() {
  setup
  host_hrm
  plugin
  local work="$OUT/check" failed=0 passed=0
  mkdir -p "$work"
  if [ -n "${HRM_BLOB:-}" ]; then
    # A given blob: the M4F's answers to the whole session, nothing else (no model to convert).
    blob
    "$HRM" solve sudoku --file "$FW/puzzles.txt" --model "$BLOB" >"$work/host.txt"
    session_input 10 >"$work/input.txt"
    session_expected "$work/host.txt" 10 >"$work/expected.txt"
    check_one sudoku-uart "$work/input.txt" "$work/expected.txt"
    note
    summary
    return
  fi
  # f32 on the M4F's FPU (about 20 s a puzzle under QEMU): the built-in model, three puzzles and
  # the malformed lines (the integer cores answer more, see cores).
  blob
  "$HRM" solve sudoku --file "$FW/puzzles.txt" --model "$BLOB" >"$work/host.txt"
  [ "$(wc -l <"$work/host.txt")" -eq 10 ] || die "hrm solve did not answer the ten puzzles"
  session_input 3 >"$work/input.txt"
  session_expected "$work/host.txt" 3 >"$work/expected.txt"
  check_one sudoku-uart "$work/input.txt" "$work/expected.txt"
  note
  # The defmt build answers the same, with its log kept off the UART.
  head -n 1 "$work/input.txt" >"$work/input-defmt.txt"
  head -n 1 "$work/expected.txt" >"$work/expected-defmt.txt"
  check_one sudoku-uart "$work/input-defmt.txt" "$work/expected-defmt.txt" --features defmt
  if [ "$RESULT" = ok ] && ! [ -s "$work/sudoku-uart+defmt.err" ]; then
    RESULT=FAIL RESULT_LINE="sudoku-uart+defmt: no defmt frames on stderr"
  fi
  note
  # f16 weights on the M4F (the FPU's dot-product loop converts them with VCVTB): two puzzles
  # and the malformed lines, about 25 s under QEMU.
  WEIGHTS=f16 blob
  "$HRM" solve sudoku --file "$FW/puzzles.txt" --model "$BLOB" >"$work/host-f16.txt"
  session_input 2 >"$work/input-f16.txt"
  session_expected "$work/host-f16.txt" 2 >"$work/expected-f16.txt"
  WEIGHTS=f16 ELF_TAG=f16 check_one sudoku-uart "$work/input-f16.txt" "$work/expected-f16.txt"
  note
  # f32 in soft float on the FPU-less M3, on the one-segment tiny model (the built-in one takes
  # over 3 minutes a puzzle there under QEMU): puzzle 1 and the malformed lines
  # (CHECK_M3_ALL=1: all ten).
  local m3=1
  if [ -n "${CHECK_M3_ALL:-}" ]; then m3=10; fi
  tiny_config
  MODEL="$TINY_MODEL" MODEL_CONFIG="$TINY_CONFIG" BLOB_NAME=sudoku-tiny1 blob
  "$HRM" solve sudoku --file "$FW/puzzles.txt" --model "$BLOB" >"$work/host-tiny.txt"
  session_input "$m3" >"$work/input-m3.txt"
  session_expected "$work/host-tiny.txt" "$m3" >"$work/expected-m3.txt"
  MODEL="$TINY_MODEL" MODEL_CONFIG="$TINY_CONFIG" BLOB_NAME=sudoku-tiny1 ELF_TAG=tiny check_one sudoku-uart-m3 "$work/input-m3.txt" "$work/expected-m3.txt"
  note
  # The C firmware over the C interface (int8 blob, the M4F): two puzzles, an ensemble of two on
  # a third, a refused line and a refused k, answered as the host answers.
  WEIGHTS=int8 blob
  "$HRM" solve sudoku --file "$FW/puzzles.txt" --model "$BLOB" >"$work/host-int8.txt"
  "$HRM" solve sudoku --ensemble 2 --model "$BLOB" "$(sed -n 3p "$FW/puzzles.txt")" >"$work/host-int8-k2.txt"
  {
    head -n 2 "$FW/puzzles.txt"
    echo "k=2"
    sed -n 3p "$FW/puzzles.txt"
    echo "12345"
    echo "k=0"
  } >"$work/input-c.txt"
  {
    head -n 2 "$work/host-int8.txt"
    echo "k=2"
    cat "$work/host-int8-k2.txt"
    echo "error: the puzzle does not have 81 cells"
    echo "error: k must be from 1 to 65536"
  } >"$work/expected-c.txt"
  WEIGHTS=int8 check_one c-uart "$work/input-c.txt" "$work/expected-c.txt"
  note
  # The int8, int4, f32 and f16 kernels of the DSP and FPU cores against the reference loops, over
  # shapes the model never has (sudoku-uart/src/kernel_check.rs): one line each before the
  # (empty) session, a few seconds under QEMU.
  echo "kernel-check: 2160 int8, 2160 int4, 2160 f32 and 2160 f16 products (the float ones also added to outputs), every output's bits equal to the reference's" >"$work/expected-kernels.txt"
  : >"$work/input-kernels.txt"
  local example
  for example in sudoku-uart sudoku-uart-m7 sudoku-uart-m33 sudoku-uart-m55; do
    WEIGHTS=int8 ELF_TAG=int8 check_one "$example" "$work/input-kernels.txt" "$work/expected-kernels.txt" --features kernel-check
    note
  done
  # The same bits on every core, and the gate's figures from the same runs (see cores).
  local cstatus=0
  (cores) >"$work/cores.txt" 2>"$work/cores.err" || cstatus=$?
  report "$work/cores.txt" "$cstatus" cores "$work/cores.err"
  if [ "$cstatus" -eq 0 ]; then
    local gstatus=0
    (gate_compare) >"$work/gate.txt" 2>&1 || gstatus=$?
    report "$work/gate.txt" "$gstatus" gate "$work/gate.txt"
  fi
  # The f32 build is the largest: it must still link into the 1 MiB M4F parts (see fit; a
  # runtime change once pushed it 2.4 KB over without a test noticing).
  local fstatus=0
  (MEASURE_WEIGHTS=f32 fit_check) >"$work/fit.txt" 2>"$work/fit.err" || fstatus=$?
  report "$work/fit.txt" "$fstatus" fit "$work/fit.err"
  # No floating point in the integer forward pass (see nofloat); its build log goes to
  # nofloat.err, its walks to target/firmware/nofloat/.
  local status=0
  (nofloat) >"$work/nofloat.txt" 2>"$work/nofloat.err" || status=$?
  report "$work/nofloat.txt" "$status" nofloat "$work/nofloat.err"
  summary
}

# REPORT FILE STATUS NAME LOG: the lines of a sub-check, counted as one check.
report() {
  local line
  while IFS= read -r line; do say "$line"; done <"$1"
  if [ "$2" -ne 0 ]; then
    if ! grep -q FAIL "$1"; then say "FAIL $3: exit status $2 (see $4)"; fi
    failed=$((failed + 1))
  else
    passed=$((passed + 1))
  fi
}
summary() {
  echo "firmware check: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# ---------------------------------------------------------------------------------------------
# cores: the same blob gives the same bits on every core

# The integer-only blob (and the int8 blob on the DSP cores) on every core QEMU runs here, built
# with `--features digest`: each answer is followed by the digest (FNV-1a) of every segment's
# logits and Q values, and must equal `hrm solve sudoku --digest` on x86-64 (at every kernel
# level). Each core answers CORES_PUZZLES puzzles (default 2; CORES_PUZZLES=10 is the whole
# session) and the malformed lines; the M0 instruction set, the slowest, one puzzle. Every run is counted with the instruction plugin: the gate's rows (GATE_ROWS)
# come from these runs. The ELFs are built one after the other, then run two at a time (one
# QEMU per core; instruction counts do not depend on it). Prints ok/FAIL lines in a fixed
# order; returns non-zero on any difference.
cores() {
  setup
  host_hrm
  plugin
  local work="$OUT/cores" n="${CORES_PUZZLES:-2}" failed=0
  mkdir -p "$work"
  : >"$OUT/gate.txt"
  : >"$work/none.txt"
  local weights example runs=()
  rm -f "$work"/gate-*.txt "$work"/result-*.txt
  for weights in fixed int8; do
    WEIGHTS=$weights blob
    "$HRM" solve sudoku --digest --file "$FW/puzzles.txt" --model "$BLOB" >"$work/host-$weights.txt"
    local level
    for level in baseline avx2 avxvnni; do
      HRM_KERNELS=$level "$HRM" solve sudoku --digest --file "$FW/puzzles.txt" --model "$BLOB" >"$work/host-$weights-$level.txt"
      if ! cmp -s "$work/host-$weights.txt" "$work/host-$weights-$level.txt"; then
        echo "FAIL cores: $weights blob, x86-64 HRM_KERNELS=$level differs from the native level"
        failed=1
      fi
    done
    local examples="sudoku-uart sudoku-uart-m7 sudoku-uart-m33 sudoku-uart-m55"
    if [ "$weights" = fixed ]; then examples="sudoku-uart-m0 sudoku-uart-m3 $examples sudoku-riscv"; fi
    for example in $examples; do
      local puzzles="$n"
      case "$example:$weights" in
        sudoku-uart-m0:*) puzzles=1 ;;
      esac
      session_input "$puzzles" >"$work/input-$weights-$example.txt"
      session_expected "$work/host-$weights.txt" "$puzzles" >"$work/expected-$weights-$example.txt"
      if [ "$example:$weights" = sudoku-uart-m7:int8 ]; then
        # The ensemble: `k=2`, a hard puzzle (22 givens), `k=1`: the answer of `hrm solve
        # sudoku --ensemble 2` (symmetries, the first valid answer), no digest.
        local hard
        hard="$("$HRM" generate sudoku --givens 22 --count 1 --seed 5 2>/dev/null | awk -F, 'NR == 2 {print $1}')"
        printf 'k=2\n%s\nk=1\n' "$hard" >>"$work/input-$weights-$example.txt"
        { echo k=2; "$HRM" solve sudoku --ensemble 2 --model "$BLOB" "$hard" 2>/dev/null; echo k=1; } \
          >>"$work/expected-$weights-$example.txt"
      fi
      WEIGHTS=$weights ELF_TAG=$weights-digest build "$example" --features digest
      runs+=("$weights $example $puzzles")
    done
  done
  # The runs, two at a time; each job's lines go to its own file, printed in order after.
  local run running=0
  for run in "${runs[@]}"; do
    read -r weights example puzzles <<<"$run"
    if [ "$running" -ge 2 ]; then
      wait -n || true
      running=$((running - 1))
    fi
    (
      WEIGHTS=$weights ELF_TAG=$weights-digest COUNT=1 check_run "$example" "$work/input-$weights-$example.txt" \
        "$work/expected-$weights-$example.txt" --features digest
      if [ "$RESULT" = ok ]; then
        echo "ok   cores: $RESULT_LINE"
        case " $GATE_ROWS " in
          *" $example:$weights "*)
            gate_row "$example" "$weights" "$puzzles" "$work/$example+digest-$weights-digest.count" \
              "$work/gate-$example-$weights.txt"
            ;;
        esac
      else
        echo "FAIL cores: $RESULT_LINE"
      fi
    ) >"$work/result-$weights-$example.txt" &
    running=$((running + 1))
  done
  wait
  for run in "${runs[@]}"; do
    read -r weights example puzzles <<<"$run"
    cat "$work/result-$weights-$example.txt"
    grep -q '^ok ' "$work/result-$weights-$example.txt" || failed=1
    if [ -f "$work/gate-$example-$weights.txt" ]; then cat "$work/gate-$example-$weights.txt" >>"$OUT/gate.txt"; fi
  done
  return "$failed"
}

# ---------------------------------------------------------------------------------------------
# gate: a regression gate on instructions and sizes

# The figures the gate keeps: for each row, an example, its blob, executed instructions per
# segment (a counted cores run minus a run with no input, over its segments), flash and static
# RAM of that (digest) build. Fast rows only (no soft-float f32): the gate runs in CI.
GATE_ROWS="sudoku-uart:int8 sudoku-uart:fixed sudoku-uart-m33:int8 sudoku-uart-m33:fixed sudoku-uart-m55:int8 sudoku-uart-m55:fixed sudoku-uart-m3:fixed sudoku-riscv:fixed"
GATE_BASELINE="$FW/gate-baseline.txt"

# GATE_ROW EXAMPLE WEIGHTS PUZZLES COUNTFILE [OUT]: appends the row to OUT (default
# target/firmware/gate.txt; ELF, BLOB and the example's settings are those of the run just made).
gate_row() {
  local name="$1" weights="$2" puzzles="$3" count="$4" to="${5:-$OUT/gate.txt}" cfg segments n0 n1 flash ram
  cfg="$("$HRM" inspect "$BLOB")"
  segments="$(awk '$1 == "segments" {print $3}' <<<"$cfg")"
  n0="$(count "$OUT/cores/none.txt" | awk '$1 == "insns" {print $2}')"
  n1="$(awk '$1 == "insns" {print $2}' "$count")"
  flash=$(size -A "$ELF" | awk '$1 ~ /^\.(vector_table|text|rodata|data|init|trap|srodata|sdata)$/ {s += $2} END {print s}')
  ram=$(size -A "$ELF" | awk '$1 ~ /^\.(data|bss|uninit|sdata|sbss)$/ {s += $2} END {print s}')
  echo "$name $weights $(((n1 - n0) / (segments * puzzles))) $flash $ram" >>"$to"
}

# Runs cores (whose runs make target/firmware/gate.txt, `example weights insns_per_segment flash
# static_ram` a row) and compares the rows with firmware-examples/gate-baseline.txt.
gate() {
  local status=0
  (cores) >"$OUT/gate-cores.txt" 2>"$OUT/gate-cores.err" || status=$?
  cat "$OUT/gate-cores.txt"
  [ "$status" -eq 0 ] || die "cores failed (see $OUT/gate-cores.err): no figures to gate"
  gate_compare
}

# Any figure of target/firmware/gate.txt more than 2 % above its baseline fails, unless the
# baseline itself changed in the last commit (or in the work tree): a change that means to cost
# more says so by updating the baseline. GATE_WRITE=1 writes the baseline instead.
gate_compare() {
  local failed=0
  [ -s "$OUT/gate.txt" ] || die "no figures in $OUT/gate.txt"
  if [ -n "${GATE_WRITE:-}" ]; then
    {
      echo "# scripts/firmware.sh gate: example weights insns_per_segment flash_bytes static_ram_bytes (digest builds)"
      cat "$OUT/gate.txt"
    } >"$GATE_BASELINE"
    echo "ok   gate: wrote $GATE_BASELINE"
    cat "$GATE_BASELINE"
    return 0
  fi
  [ -f "$GATE_BASELINE" ] || die "no $GATE_BASELINE (GATE_WRITE=1 scripts/firmware.sh gate makes it)"
  # The baseline "changes in this commit" when the work tree differs from HEAD there, or HEAD
  # itself changed it.
  local changed=""
  if ! git -C "$ROOT" diff --quiet HEAD -- "$GATE_BASELINE" 2>/dev/null ||
    git -C "$ROOT" diff --name-only HEAD~1 HEAD -- "$GATE_BASELINE" 2>/dev/null | grep -q .; then
    changed=1
  fi
  local name weights insns flash ram rows=0
  while read -r name weights insns flash ram; do
    rows=$((rows + 1))
    local base
    base="$(awk -v n="$name" -v w="$weights" '$1 == n && $2 == w {print $3, $4, $5}' "$GATE_BASELINE")"
    if [ -z "$base" ]; then
      echo "FAIL gate: $name $weights is not in $GATE_BASELINE"
      failed=1
      continue
    fi
    local what now was verdict=ok i=0
    read -r -a was <<<"$base"
    for what in insns flash ram; do
      now="${!what}"
      # now > was · 1.02 fails (integers: 100 · now > 102 · was).
      if [ $((100 * now)) -gt $((102 * ${was[$i]})) ]; then verdict=worse; fi
      i=$((i + 1))
    done
    local line="$name $weights: $insns insns/segment (baseline ${was[0]}), flash $flash (${was[1]}), static RAM $ram (${was[2]})"
    if [ "$verdict" = ok ]; then
      echo "ok   gate: $line"
    elif [ -n "$changed" ]; then
      echo "ok   gate: $line: over 2 % worse, but the baseline changes in this commit"
    else
      echo "FAIL gate: $line: over 2 % worse than the baseline (update $GATE_BASELINE in the same commit if meant)"
      failed=1
    fi
  done <"$OUT/gate.txt"
  local expected
  expected="$(wc -w <<<"$GATE_ROWS")"
  if [ "$rows" -ne "$expected" ]; then
    echo "FAIL gate: $rows rows measured, $expected expected ($GATE_ROWS)"
    failed=1
  fi
  return "$failed"
}

# ---------------------------------------------------------------------------------------------
# nofloat: no floating point in the integer path

# The integer forward pass, walked from; and the control, which must reach floating point
# (a fixed-point session still turns the Q values into f32 for its caller; an f32 one is all
# floats). Roots are demangled paths without `<>`; an inlined root counts by its inlined code.
# NOFLOAT_ROOTS="A|B" walks from others (e.g. …|hrm_runtime::model::Matrix::matmul, to see it fail).
NOFLOAT_ROOTS="${NOFLOAT_ROOTS:-hrm_runtime::fixed::forward::Forward::embed|hrm_runtime::fixed::forward::Forward::step|hrm_runtime::fixed::forward::Forward::predictions}"
NOFLOAT_CONTROL="hrm_runtime::session::Session::step"

# Sets LLVM_TOOL to LLVM's NAME (llvm-objdump, llvm-dwarfdump): NAME-22, else the newest NAME-N,
# else NAME; installs llvm-22 when there is none (binutils' objdump here knows no Thumb).
llvm_tool() {
  local name="$1"
  LLVM_TOOL="$(command -v "$name-22" || compgen -c "$name-" | grep -E "^$name-[0-9]+\$" | sort -V | tail -n 1 || true)"
  if [ -z "$LLVM_TOOL" ]; then LLVM_TOOL="$(command -v "$name" || true)"; fi
  if [ -z "$LLVM_TOOL" ]; then
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    say "installing llvm-22 (for $name)"
    $sudo apt-get update -q >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends llvm-22 >&2
    LLVM_TOOL="$(command -v "$name-22")" || die "no $name after installing llvm-22"
  fi
}

# The call graph of an ELF, from roots: every function that a direct branch (bl, b, b<cond>,
# blx, b.w, cbz/cbnz) of a reachable function lands in, when the target is another function or
# a function's first instruction (Thumb-1 also uses bl for long jumps inside a function); an
# indirect call (blx/bx through a register: vtables, fmt's argument formatters) may land in any
# function whose address the image holds (a word equal to a function's start | 1, outside the
# vector table), so it leads to all of them. Inputs, in order: symbols (nm -n -S -C), inlined
# ("NAME\tLOW\tHIGH": address ranges of inlined instances), words (od -t x4 of the image's
# sections), disassembly (llvm-objdump -d); -v roots="A|B|…" (demangled, `<>` removed). Prints
# the walk, then "floats NAME,…" and "summary REACHABLE FLOATS MISSING INDIRECT UNKNOWN".
# shellcheck disable=SC2016 # an awk program
CALLGRAPH_AWK='
function hex(s,   i, n, c) {
  s = tolower(s); sub(/^0x/, "", s); n = 0
  for (i = 1; i <= length(s); i++) {
    c = index("0123456789abcdef", substr(s, i, 1)); if (c == 0) break; n = n * 16 + c - 1
  }
  return n
}
function clean(s) { gsub(/\[[0-9a-f]+\]/, "", s); if (match(s, /::h[0-9a-f]+$/) && RLENGTH == 19) s = substr(s, 1, RSTART - 1); return s }
function norm(s) { s = clean(s); gsub(/[<>]/, "", s); return s }
# The function (index into fs/fe) holding address a, or 0.
function find(a,   lo, hi, mid) {
  lo = 1; hi = nf
  while (lo <= hi) { mid = int((lo + hi) / 2); if (fs[mid] <= a) lo = mid + 1; else hi = mid - 1 }
  return (hi >= 1 && a < fe[hi]) ? hi : 0
}
# Floating-point routines: the soft-float ABI (__aeabi_f*, __aeabi_d*, int-to-float), libgcc
# names with sf/df/tf/hf modes, compiler_builtins float and math modules, libm, float formatting.
function is_float(s,   last) {
  last = s; sub(/.*::/, "", last)
  return last ~ /^__aeabi_([fd]|[ilu]+2[fdh]|h2f)/ || last ~ /^__.*([sdthx]f|[sd]c3)/ || last ~ /^__gnu_[hf]2[hf]/ ||
    last ~ /^(a?sinh?|a?cosh?|a?tanh?|atan2|exp|exp2|expm1|log|log2|log10|log1p|pow|powi|sqrt|cbrt|hypot|fma|fmod|floor|ceil|round|rint|trunc|fabs|erfc?|[lt]gamma|ldexp|frexp|modf|copysign|fmin|fmax|fdim|scalbn)f?$/ ||
    s ~ /compiler_builtins::(float|math)::|(^|[^a-z_])libm::|core::fmt::float::|flt2dec|dec2flt/
}
function reached(t, from, how) { if (!(t in reach)) { reach[t] = 1; parent[t] = from; via[t] = how; q[++qn] = t } }
function chain(i,   s) { s = label[i]; while (parent[i] > 0) { s = label[parent[i]] via[i] s; i = parent[i] }; return via[i] s }
FNR == 1 { file++ }
file == 1 {
  # nm -n -S -C: "addr size type name" (sized) or "addr type name"; $t/$d are mapping symbols.
  line = $0
  if (NF >= 4 && $3 ~ /^[tTwW]$/) { sub(/^[0-9a-fA-F]+ [0-9a-fA-F]+ [tTwW] /, "", line); size = hex($2) }
  else if (NF >= 3 && $2 ~ /^[tTwW]$/) { sub(/^[0-9a-fA-F]+ [tTwW] /, "", line); size = 0 }
  else next
  if (line ~ /^\$/) next
  a = hex($1); a -= a % 2
  if (size > 0 && !(a in at)) { nf++; fs[nf] = a; fe[nf] = a + size; at[a] = nf }
  else if (size > 0 && a + size > fe[at[a]]) fe[at[a]] = a + size
  name = clean(line); if (a in alias) name = alias[a] " = " name
  alias[a] = name
  n = norm(line); st = a; if (n in byname) st = byname[n] " " a
  byname[n] = st
  next
}
file == 2 { inl++; iname[inl] = norm($1); ilo[inl] = hex($2); ihi[inl] = hex($3); next }
file == 3 { w = hex($1); if (w % 2 == 1 && (w - 1) in at) taken[at[w - 1]] = 1; next }
file == 4 && /^ *[0-9a-f]+:/ {
  split($0, p, "\t"); m = p[2]; gsub(/ /, "", m); ops = p[3]
  if (m !~ /^(b|bl|blx|bx)(eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)?(\.[nw])?$/ && m !~ /^cbn?z$/) next
  src = hex(substr($1, 1, index($1, ":") - 1)); cf = find(src)
  if (!match(ops, /0x[0-9a-f]+/)) {
    if (ops !~ /^ *lr/) { indirect[cf]++; isrc[cf] = isrc[cf] sprintf(" 0x%x", src); ne++; esrc[ne] = src; etf[ne] = "*" }
    next
  }
  tgt = hex(substr(ops, RSTART, RLENGTH)); tf = find(tgt)
  if (tf == 0) { unknown[cf] = unknown[cf] sprintf(" 0x%x", tgt); ne++; esrc[ne] = src; etf[ne] = -tgt; next }
  if (tf == cf && tgt != fs[tf]) next
  ne++; esrc[ne] = src; etf[ne] = tf
  if (!((cf, tf) in seen)) { seen[cf, tf] = 1; adj[cf] = adj[cf] " " tf }
}
END {
  for (i = 1; i <= nf; i++) { label[i] = alias[fs[i]]; if (i in taken) { ntaken++; alltaken = alltaken " " i } }
  printf "functions: %d, of which %d have their address in the image (targets of indirect calls)\n", nf, ntaken
  nroots = split(roots, root, "|"); missing = 0; qn = 0
  for (r = 1; r <= nroots; r++) {
    found = 0
    if (root[r] in byname) {
      k = split(byname[root[r]], starts, " ")
      for (j = 1; j <= k; j++) if ((starts[j] + 0) in at) {
        i = at[starts[j] + 0]; found++
        reached(i, 0, "root: ")
        printf "root %s: the function at 0x%x\n", root[r], fs[i]
      }
    }
    for (k = 1; k <= inl; k++) if (iname[k] == root[r]) {
      found++; host = find(ilo[k])
      printf "root %s: inlined into %s, [0x%x, 0x%x)\n", root[r], label[host], ilo[k], ihi[k]
      for (e = 1; e <= ne; e++) if (esrc[e] >= ilo[k] && esrc[e] < ihi[k]) {
        how = sprintf("root: %s (inlined into %s, call at 0x%x) -> ", root[r], label[host], esrc[e])
        if (etf[e] == "*") {
          rootind++; n = split(alltaken, tk, " "); for (j = 1; j <= n; j++) reached(tk[j] + 0, 0, how "indirectly ")
        } else if (etf[e] < 0) { rootunk++; printf "  branch to 0x%x, in no function\n", -etf[e] }
        else reached(etf[e], 0, how)
      }
    }
    if (!found) { printf "root %s: NOT FOUND\n", root[r]; missing++ }
  }
  for (h = 1; h <= qn; h++) {
    i = q[h]; k = split(adj[i], next_, " ")
    for (j = 1; j <= k; j++) reached(next_[j] + 0, i, " -> ")
    if (indirect[i] > 0) { n = split(alltaken, tk, " "); for (j = 1; j <= n; j++) reached(tk[j] + 0, i, " -(indirect)-> ") }
  }
  floats = 0; ind = rootind > 0; unk = rootunk > 0; list = ""
  printf "reachable functions: %d\n", qn
  for (h = 1; h <= qn; h++) {
    i = q[h]; flag = ""; fname = ""
    k = split(alias[fs[i]], names, " = ")
    for (j = 1; j <= k; j++) if (fname == "" && is_float(names[j])) fname = names[j]
    if (fname != "") { flag = "FLOAT "; floats++; list = list (list == "" ? "" : ",") fname }
    if (indirect[i] > 0) { flag = flag "INDIRECT(" indirect[i] " at" isrc[i] ") "; ind++ }
    if (unknown[i] != "") { flag = flag "UNKNOWN-TARGET(" unknown[i] ") "; unk++ }
    printf "  %s0x%x %5d %s\n", flag, fs[i], fe[i] - fs[i], label[i]
    if (fname != "" || unknown[i] != "") printf "      %s\n", chain(i)
  }
  printf "floats %s\n", list
  printf "summary %d %d %d %d %d\n", qn, floats, missing, ind, unk
}'

# WALK LOG ROOTS: the call graph from ROOTS ("A|B") in the files nofloat made; the walk goes
# to LOG; sets REACHABLE, FLOATS, MISSING, INDIRECT, UNKNOWN (counts) and FLOAT_NAMES.
walk() {
  local log="$1" roots="$2" work="$OUT/nofloat"
  awk -v roots="$roots" "$CALLGRAPH_AWK" "$work/symbols.txt" "$work/inlined.txt" "$work/words.txt" \
    "$work/disassembly.txt" >"$log"
  read -r _ REACHABLE FLOATS MISSING INDIRECT UNKNOWN < <(tail -n 1 "$log")
  # The first six, for the summary line.
  FLOAT_NAMES="$(awk '$1 == "floats" {n = split($2, f, ","); s = f[1]; for (i = 2; i <= n && i <= 6; i++) s = s ", " f[i]; if (n > 6) s = s ", …"; print s}' "$log")"
}

# Builds sudoku-uart for the Cortex-M0+ (thumbv6m-none-eabi: no FPU, so every float operation
# is a call into compiler_builtins' soft float) with the fixed-point blob, linked for the
# RP2040 as `fit` links it, and walks the call graph from the integer forward pass
# (fixed::Forward's embed, step, predictions): it must reach no floating-point routine. The
# same walk from Session::step must reach some, or the walk proves nothing.
nofloat() {
  setup
  WEIGHTS=fixed blob
  local target=thumbv6m-none-eabi work="$OUT/nofloat" objdump dwarfdump
  mkdir -p "$work"
  llvm_tool llvm-objdump
  objdump="$LLVM_TOOL"
  llvm_tool llvm-dwarfdump
  dwarfdump="$LLVM_TOOL"
  say "building sudoku-uart for $target (boards/rp2040.x) with $(basename "$BLOB"); reading it with $objdump and $dwarfdump"
  if ! HRM_BLOB="$BLOB" HRM_MEMORY_X="$FW/boards/rp2040.x" \
    fw_cargo build --release --locked -p sudoku-uart --target "$target" >"$work/build.log" 2>&1; then
    tail -n 20 "$work/build.log" >&2
    die "the $target build failed (see $work/build.log)"
  fi
  local elf="$OUT/nofloat-$target.elf"
  cp "$FW/target/$target/release/sudoku-uart" "$elf"
  nm -n -S -C --defined-only "$elf" >"$work/symbols.txt"
  "$objdump" -d --no-show-raw-insn "$elf" >"$work/disassembly.txt"
  # Every aligned word of the image's sections but the vector table (whose handlers the core
  # calls, not the code): the function addresses among them are what indirect calls can reach.
  readelf -S -W "$elf" | sed 's/^ *\[ *[0-9]*\]//' |
    awk '$2 == "PROGBITS" && $7 ~ /A/ && $1 != ".vector_table" {print $4, $5}' |
    while read -r offset size; do
      od -An -v -t x4 -w4 -j $((0x$offset)) -N $((0x$size)) "$elf"
    done >"$work/words.txt"
  # Inlined instances (a root that the compiler inlined counts by its code inside its host):
  # NAME LOW HIGH per address range, names demangled.
  "$dwarfdump" --debug-info "$elf" | awk '
    function flush() { if (name != "") for (k = 1; k <= n; k++) print name "\t" lo[k] "\t" hi[k]; name = ""; n = 0; low = "" }
    /DW_TAG_/ || /NULL$/ { flush(); inl = /DW_TAG_inlined_subroutine/; inr = 0; next }
    !inl { next }
    /DW_AT_abstract_origin/ && match($0, /"[^"]*"/) { name = substr($0, RSTART + 1, RLENGTH - 2) }
    /DW_AT_low_pc/ && match($0, /0x[0-9a-f]+/) { low = substr($0, RSTART, RLENGTH) }
    /DW_AT_high_pc/ && match($0, /0x[0-9a-f]+/) { n++; lo[n] = low; hi[n] = substr($0, RSTART, RLENGTH) }
    /DW_AT_ranges/ { inr = 1 }
    inr && match($0, /\[0x[0-9a-f]+, 0x[0-9a-f]+\)/) { s = substr($0, RSTART + 1, RLENGTH - 2); split(s, b, ", "); n++; lo[n] = b[1]; hi[n] = b[2] }
    END { flush() }' | c++filt >"$work/inlined.txt"

  local failed=0
  walk "$work/forward.log" "$NOFLOAT_ROOTS"
  local line="$REACHABLE functions reachable from fixed::Forward::{embed,step,predictions} on $target"
  if [ "$MISSING" -ne 0 ]; then
    echo "FAIL nofloat: $MISSING of the roots not found in $elf (see $work/forward.log)"
    failed=1
  elif [ "$FLOATS" -ne 0 ]; then
    echo "FAIL nofloat: $line, $FLOATS of them floating point: $FLOAT_NAMES (chains in $work/forward.log)"
    failed=1
  elif [ "$UNKNOWN" -ne 0 ]; then
    echo "FAIL nofloat: $line, but $UNKNOWN of them branch to addresses in no function: not proven (see $work/forward.log)"
    failed=1
  else
    echo "ok   nofloat: $line ($INDIRECT with indirect calls, followed to every address-taken function), none floating point (list: $work/forward.log)"
  fi
  walk "$work/control.log" "$NOFLOAT_CONTROL"
  if [ "$MISSING" -ne 0 ] || [ "$FLOATS" -eq 0 ]; then
    echo "FAIL nofloat control: the walk from $NOFLOAT_CONTROL finds no floating-point routine ($REACHABLE reachable; see $work/control.log): the walk is broken"
    failed=1
  else
    echo "ok   nofloat control: $NOFLOAT_CONTROL reaches $FLOATS floating-point routines of $REACHABLE functions ($FLOAT_NAMES)"
  fi
  return "$failed"
}

# ---------------------------------------------------------------------------------------------
# measure: sizes, arena, stack, executed instructions

plugin() {
  PLUGIN="$OUT/libinsncount.so"
  if [ ! -f "$PLUGIN" ] || [ "$ROOT/scripts/qemu-insn-count.c" -nt "$PLUGIN" ]; then
    mkdir -p "$OUT"
    gcc -O2 -Wall -Wextra -shared -fPIC -o "$PLUGIN" "$ROOT/scripts/qemu-insn-count.c"
  fi
}

# Executed instructions for INPUT (a file), stack low-water when WINDOW=1.
count() {
  # One output file per ELF: cores counts two runs at a time.
  local input="$1" result="${ELF%.elf}.count.txt"
  local options="out=$result"
  if [ "${WINDOW:-}" = 1 ]; then
    options="$options,low=0x$(nm "$ELF" | awk '$3 == "__ebss" {print $1}'),high=0x$(nm "$ELF" | awk '$3 == "_stack_start" {print $1}')"
  fi
  { cat "$input"; printf '\004'; } | qemu -plugin "$PLUGIN,$options" >/dev/null
  cat "$result"
}

# profile EXAMPLE [--features F]: one puzzle under the plugin with blocks=, each translation
# block's instructions attributed to the innermost (inlined) function its first instruction
# belongs to (llvm-symbolizer over the ELF's DWARF), and to the symbol holding it. Prints the
# top 30 of each with their share; the block list stays in target/firmware/profile/.
profile() {
  setup
  host_hrm
  plugin
  build "$@"
  local work="$OUT/profile"
  mkdir -p "$work"
  head -n 1 "$FW/puzzles.txt" >"$work/one.txt"
  { cat "$work/one.txt"; printf '\004'; } |
    qemu -plugin "$PLUGIN,out=$work/count.txt,blocks=$work/blocks.txt" >"$work/answer.txt"
  llvm_tool llvm-symbolizer
  awk '{print $1}' "$work/blocks.txt" | "$LLVM_TOOL" --obj="$ELF" --output-style=JSON --demangle >"$work/symbols.json"
  say "$(basename "$ELF") with $(basename "$BLOB"): $(cat "$work/count.txt"), one puzzle and boot"
  python3 - "$work/blocks.txt" "$work/symbols.json" <<'PY'
import json, re, sys
from collections import Counter
blocks = [line.split() for line in open(sys.argv[1])]
frames = [json.loads(line) for line in open(sys.argv[2])]
inner, outer, total = Counter(), Counter(), 0
def short(name):
    # Generic arguments and hashes make names unreadable: keep the path.
    name = re.sub(r"<[^<>]*>", "", re.sub(r"<[^<>]*>", "", re.sub(r"<[^<>]*>", "", name)))
    return name.replace("::{{closure}}", "{closure}")[-90:]
for (addr, n, count), sym in zip(blocks, frames):
    insns = int(n) * int(count)
    total += insns
    chain = sym.get("Symbol") or [{}]
    inner[short(chain[0].get("FunctionName", "?"))] += insns
    outer[short(chain[-1].get("FunctionName", "?"))] += insns
for title, table in (("innermost function", inner), ("symbol", outer)):
    print(f"{'instructions':>14} {'share':>6}  {title}")
    for name, insns in table.most_common(30):
        print(f"{insns:>14,} {100 * insns / total:5.1f}%  {name}")
    print()
PY
}

section() { size -A "$ELF" | awk -v s="$1" '$1 == s {print $2}'; }

measure() {
  setup
  host_hrm
  plugin
  local work="$OUT/measure"
  mkdir -p "$work"
  head -n 1 "$FW/puzzles.txt" >"$work/one.txt"
  : >"$work/none.txt"
  local rows=() cfg=""
  for weights in $(weight_variants); do
    for name in sudoku-uart sudoku-uart-m3; do
      WEIGHTS=$weights ELF_TAG=$weights build "$name"
      cfg="$("$HRM" inspect "$BLOB")"
      local segments text rodata data bss blob_bytes arena
      segments="$(awk '$1 == "segments" {print $3}' <<<"$cfg")"
      text=$(($(section .vector_table) + $(section .text)))
      rodata=$(section .rodata)
      data=$(section .data)
      bss=$(($(section .bss) + $(section .uninit)))
      blob_bytes=$(stat -c %s "$BLOB")
      arena="$(awk '$1 == "arena" {print $2}' <<<"$cfg")"
      # Instructions with no puzzle (boot, model validation, exit) and with one; the
      # difference over the segments is the cost of a segment (plus one puzzle's parsing,
      # embedding, argmax and UART traffic, well under 0.1 %).
      local n0 n1 low stack
      n0="$(count "$work/none.txt" | awk '$1 == "insns" {print $2}')"
      n1="$(WINDOW=1 count "$work/one.txt")"
      low="$(awk '$1 == "lowest_store" {print $2}' <<<"$n1")"
      n1="$(awk '$1 == "insns" {print $2}' <<<"$n1")"
      stack=$((0x$(nm "$ELF" | awk '$3 == "_stack_start" {print $1}') - low))
      local line="| $name | $weights | $((text + rodata + data)) | $blob_bytes | $((text + rodata - blob_bytes)) | $((data + bss)) | $arena | $stack | $((data + bss + stack)) | $n0 | $((n1 - n0)) | $(((n1 - n0) / segments)) |"
      rows+=("$line")
      say "$line"
    done
  done
  macs "$cfg"
  fit
  echo "| example | weights | flash bytes | of which blob | code + other constants | static RAM (.data+.bss) | of which arena | stack used | RAM total | boot insns | insns per puzzle | insns per segment |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "multiply-accumulates per segment: $MACS"
  echo
  echo "| board | memory map | core (target) | weights | flash used | RAM for .data + .bss | room for the stack | links? |"
  echo "|---|---|---|---|---:|---:|---:|---|"
  printf '%s\n' "${FITS[@]}"
}

# The blobs measure and fit use: MEASURE_WEIGHTS of MODEL (WEIGHTS values; by default all of
# f32 f16 int8 int4 fixed), or the one HRM_BLOB names.
weight_variants() {
  if [ -n "${HRM_BLOB:-}" ]; then echo given; else echo "${MEASURE_WEIGHTS:-f32 f16 int8 int4 fixed}"; fi
}

# FITS: table rows saying whether the linker fits the firmware into real boards' memory maps
# (firmware-examples/boards/*.x). Same code, other memory map: the image only proves the fit.
fit() {
  FITS=()
  local boards=(
    "stm32f407 thumbv7em-none-eabihf 1048576 131072 65536"
    "nrf52840 thumbv7em-none-eabihf 1048576 262144 0"
    "rp2040 thumbv6m-none-eabi 2096896 270336 0"
  )
  local weights entry
  for weights in $(weight_variants); do
    WEIGHTS=$weights blob
    for entry in "${boards[@]}"; do
      local board target flash ram ccm log
      read -r board target flash ram ccm <<<"$entry"
      log="$OUT/fit-$board-$weights.log"
      say "linking for $board ($target) with $weights weights"
      local row="| $board | boards/$board.x | $target | $weights |"
      local runtime_features=()
      if ! blob_is_fixed; then runtime_features=(--no-default-features); fi
      if HRM_BLOB="$BLOB" HRM_MEMORY_X="$FW/boards/$board.x" \
        fw_cargo build --release --locked -p sudoku-uart --target "$target" "${runtime_features[@]}" >"$log" 2>&1; then
        ELF="$FW/target/$target/release/sudoku-uart"
        local used statics stack
        used=$(($(section .vector_table) + $(section .text) + $(section .rodata) + $(section .data)))
        statics=$(($(section .data) + $(section .bss) + $(section .uninit)))
        if [ "$ccm" -gt 0 ]; then stack="$ccm (CCM)"; else stack=$((ram - statics)); fi
        row="$row $used of $flash | $statics of $ram | $stack | yes |"
      else
        local why
        why="$(grep -o "will not fit in region '[A-Z]*': overflowed by [0-9]* bytes" "$log" | head -n 1 || true)"
        row="$row over $flash | | | no: ${why:-see $log} |"
      fi
      FITS+=("$row")
      say "$row"
    done
  done
}

# fit, then one line per row: ok where the linker fitted the image, FAIL (status 1) otherwise.
fit_check() {
  fit
  local row bad=0
  for row in "${FITS[@]}"; do
    if [[ "$row" == *"| yes |" ]]; then echo "ok   fit: $row"; else echo "FAIL fit: $row"; bad=1; fi
  done
  [ "$bad" -eq 0 ]
}

# MACS: multiply-accumulates of one ACT segment, from `hrm inspect`'s configuration lines:
# every layer pass (HRM: H_cycles x (L_cycles x L_layers + H_layers); TRM: H_cycles x
# (L_cycles + 1) x L_layers) is token mixing (attention, or TRM's mlp_t over the positions)
# plus the channel SwiGLU; then the LM head over the puzzle's cells and the Q head.
macs() {
  MACS="$(awk '
    $1 == "model" { kind = $2; mlpt = ($3 == "(mlp_t)") }
    $1 == "hidden_size" { h = $2 }
    $1 == "layers" { hl = $3; ll = $5 }
    $1 == "cycles" { hc = $3; lc = $5 }
    $1 == "sequence" { n = $3; s = $8; v = $NF }
    $1 == "swiglu" { inter = $5; intert = $8 }
    END {
      if (mlpt) mix = 3 * h * s * intert
      else mix = s * 3 * h * h + 2 * s * s * h + s * h * h
      layer = mix + 3 * s * inter * h
      if (kind == "Trm") passes = hc * (lc + 1) * ll
      else passes = hc * (lc * ll + hl)
      printf "%d", passes * layer + n * v * h + 2 * h
    }' <<<"$1")"
}

# ---------------------------------------------------------------------------------------------

[ $# -ge 1 ] || usage
command="$1"
shift
case "$command" in
  setup) setup ;;
  blob)
    blob
    echo "$BLOB"
    ;;
  build)
    build "$@"
    echo "$ELF"
    ;;
  run) run "$@" ;;
  log) log "$@" ;;
  fit)
    setup
    fit
    printf '%s\n' "${FITS[@]}"
    ;;
  check) check ;;
  nofloat) nofloat ;;
  cores) cores ;;
  gate) gate ;;
  measure) measure ;;
  profile) profile "$@" ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
