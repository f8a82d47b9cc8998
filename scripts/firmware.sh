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
#   scripts/firmware.sh measure                    sizes, arena, stack, instructions, board fit
#
# EXAMPLE: sudoku-uart (Cortex-M4F, hard float, QEMU mps2-an386) or sudoku-uart-m3 (Cortex-M3,
# soft float, mps2-an385). HRM_BLOB=path uses that blob instead of making one; MODEL=path
# converts another checkpoint; WEIGHTS=f16|bf16 stores the weights narrower; HRM=path uses that
# host `hrm` instead of building target/release/hrm.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FW="$ROOT/firmware-examples"
OUT="$ROOT/target/firmware"
# The model in flash: what `hrm convert` reads (a checkpoint directory, or a weights file with
# all_config.yaml and dataset.json beside it). By default the model built into `hrm`.
MODEL="${MODEL:-$ROOT/models/sudoku/model.safetensors}"
WEIGHTS="${WEIGHTS:-f32}"
# The runtime's work block: 1 keeps the arena smallest (the weights are read once per row,
# from flash); larger blocks trade RAM for fewer passes over the weights.
BLOCK="${BLOCK:-1}"
# The host's `hrm`, built here (release) unless HRM names one already built.
HRM_GIVEN="${HRM:-}"
HRM="${HRM:-$ROOT/target/release/hrm}"

say() { echo "firmware: $*" >&2; }
die() {
  echo "firmware: error: $*" >&2
  exit 1
}

usage() {
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------------------------------------
# Toolchain

toolchain_ok() {
  [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library/core ] &&
    command -v ld.lld-22 >/dev/null && command -v qemu-system-arm >/dev/null &&
    command -v gcc >/dev/null && command -v size >/dev/null && command -v nm >/dev/null
}

setup() {
  if ! toolchain_ok; then
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    say "installing Debian's Rust (rustc-web), lld-22, QEMU, gcc and binutils"
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      rustc-web cargo-web rust-web-src lld-22 qemu-system-arm gcc libc6-dev binutils
  fi
  toolchain_ok || die "the toolchain is still incomplete after installing"
  # Debian's security updates replace the package: ask for a version, not a revision.
  local version
  version="$(/usr/bin/rustc --version | awk '{print $2}')"
  case "$version" in
    1.[0-8][0-9].* | 1.9[0-5].*) die "/usr/bin/rustc is $version; the firmware needs 1.96 or newer (rustc-web)" ;;
  esac
}

# Debian's cargo and rustc, whatever rustup's environment says.
fw_cargo() {
  (cd "$FW" && env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET \
    -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER \
    RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 /usr/bin/cargo "$@")
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

# Sets BLOB: $HRM_BLOB if given, else target/firmware/sudoku[-WEIGHTS][-blockN].blob, converted from $MODEL when
# missing or older than the model or the converter.
blob() {
  if [ -n "${HRM_BLOB:-}" ]; then
    BLOB="$(cd "$(dirname "$HRM_BLOB")" && pwd)/$(basename "$HRM_BLOB")"
    [ -f "$BLOB" ] || die "HRM_BLOB=$HRM_BLOB is not a file"
    return
  fi
  host_hrm
  mkdir -p "$OUT"
  BLOB="$OUT/sudoku.blob"
  if [ "$WEIGHTS" != f32 ]; then BLOB="$OUT/sudoku-$WEIGHTS.blob"; fi
  if [ "$BLOCK" != 1 ]; then BLOB="${BLOB%.blob}-block$BLOCK.blob"; fi
  if [ ! -f "$BLOB" ] || [ "$MODEL" -nt "$BLOB" ] || [ "$HRM" -nt "$BLOB" ]; then
    "$HRM" convert "$MODEL" --out "$BLOB" --weights "$WEIGHTS" --block "$BLOCK" >&2
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
    *) die "unknown example '$1' (sudoku-uart, sudoku-uart-m3)" ;;
  esac
  NAME="$1"
  PACKAGE=sudoku-uart
  FEATURES=""
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

build() {
  example "$@"
  setup
  blob
  say "building $NAME ($TARGET${FEATURES:+, features $FEATURES}) with $(basename "$BLOB")"
  local args=(build --release --locked -p "$PACKAGE" --target "$TARGET")
  if [ -n "$FEATURES" ]; then args+=(--features "$FEATURES"); fi
  HRM_BLOB="$BLOB" fw_cargo "${args[@]}" >&2
  mkdir -p "$OUT"
  cp "$FW/target/$TARGET/release/$PACKAGE" "$ELF"
}

qemu() {
  # -serial stdio: UART0 on stdin/stdout; semihosting carries the exit status (and the defmt
  # frames, on stderr); -monitor none keeps QEMU's monitor off the terminal.
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

check() {
  setup
  host_hrm
  blob
  local puzzles="$FW/puzzles.txt" work="$OUT/check"
  mkdir -p "$work"
  # The host's answers for the ten puzzles, from the same blob.
  "$HRM" solve sudoku --file "$puzzles" --model "$BLOB" >"$work/host.txt"
  [ "$(wc -l <"$work/host.txt")" -eq 10 ] || die "hrm solve did not answer the ten puzzles"

  # The session: puzzles 1-5, then lines that must be refused or skipped (malformed.txt, whose
  # answers malformed.expected gives), then puzzles 6-10, the last two with CRLF endings.
  {
    head -n 5 "$puzzles"
    cat "$FW/malformed.txt"
    sed -n '6,8p' "$puzzles"
    sed -n '9,10p' "$puzzles" | sed 's/$/\r/'
  } >"$work/input.txt"
  { head -n 5 "$work/host.txt"; cat "$FW/malformed.expected"; sed -n '6,10p' "$work/host.txt"; } >"$work/expected.txt"
  # The soft-float M3 takes about 25 times longer under QEMU (over 3 minutes a puzzle with the
  # built-in model): it answers puzzle 1 and the malformed lines (CHECK_M3_ALL=1 for all ten).
  {
    head -n 1 "$puzzles"
    cat "$FW/malformed.txt"
  } >"$work/input-m3.txt"
  { head -n 1 "$work/host.txt"; cat "$FW/malformed.expected"; } >"$work/expected-m3.txt"
  if [ -n "${CHECK_M3_ALL:-}" ]; then
    cp "$work/input.txt" "$work/input-m3.txt"
    cp "$work/expected.txt" "$work/expected-m3.txt"
  fi

  local failed=0 passed=0
  check_one() { # NAME INPUT EXPECTED [--features F]
    local name="$1" input="$2" expected="$3" tag="$1"
    shift 3
    if [ $# -gt 0 ]; then tag="$name+${2//,/+}"; fi
    local started=$SECONDS status=0
    run "$name" "$@" <"$input" >"$work/$tag.out" 2>"$work/$tag.err" || status=$?
    if [ "$status" -ne 0 ]; then
      say "FAIL $tag: exit status $status (see $work/$tag.err)"
      failed=$((failed + 1))
    elif ! diff -u "$expected" "$work/$tag.out" >"$work/$tag.diff"; then
      say "FAIL $tag: answers differ from the host's:"
      head -n 40 "$work/$tag.diff" >&2
      failed=$((failed + 1))
    else
      say "ok   $tag: $(wc -l <"$work/$tag.out") lines identical to the host's, exit 0 ($((SECONDS - started)) s)"
      passed=$((passed + 1))
    fi
  }
  check_one sudoku-uart "$work/input.txt" "$work/expected.txt"
  check_one sudoku-uart-m3 "$work/input-m3.txt" "$work/expected-m3.txt"
  # The defmt build answers the same, with its log kept off the UART.
  head -n 1 "$work/input.txt" >"$work/input-defmt.txt"
  head -n 1 "$work/expected.txt" >"$work/expected-defmt.txt"
  check_one sudoku-uart "$work/input-defmt.txt" "$work/expected-defmt.txt" --features defmt
  if ! [ -s "$work/sudoku-uart+defmt.err" ]; then
    say "FAIL sudoku-uart+defmt: no defmt frames on stderr"
    failed=$((failed + 1))
    passed=$((passed - 1))
  fi
  echo "firmware check: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
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
  local input="$1" args="out=$OUT/count.txt"
  if [ "${WINDOW:-}" = 1 ]; then
    args="$args,low=0x$(nm "$ELF" | awk '$3 == "__ebss" {print $1}'),high=0x$(nm "$ELF" | awk '$3 == "_stack_start" {print $1}')"
  fi
  { cat "$input"; printf '\004'; } | qemu -plugin "$PLUGIN,$args" >/dev/null
  cat "$OUT/count.txt"
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

# f32 and f16 blobs of MODEL, or the one HRM_BLOB names.
weight_variants() {
  if [ -n "${HRM_BLOB:-}" ]; then echo given; else echo f32 f16; fi
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
      if HRM_BLOB="$BLOB" HRM_MEMORY_X="$FW/boards/$board.x" \
        fw_cargo build --release --locked -p sudoku-uart --target "$target" >"$log" 2>&1; then
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
  measure) measure ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
