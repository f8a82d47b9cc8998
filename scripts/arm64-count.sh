#!/usr/bin/env bash
# Instructions per multiply-add of the aarch64 products, counted under QEMU user mode (there is
# no aarch64 machine here to time them on: counts are indicative, not speed). One product of the
# 27M model's biggest shape, 82 × 512 · (1536 × 512)ᵀ = 64.5 M multiply-adds, for f32 and int8,
# on every aarch64 kernel level (HRM_KERNELS=neon keeps int8 on the portable tile; native takes
# the SDOT tiles where QEMU's CPU has the dot product, as its default `max` CPU does).
#
#   scripts/arm64-count.sh            # prints a table; needs qemu-aarch64, the aarch64 target
#                                     # and cross linker that .ci/run installs
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/target/arm64-count"
mkdir -p "$OUT"
gcc -O2 -Wall -Wextra -shared -fPIC -o "$OUT/libinsncount.so" "$ROOT/scripts/qemu-insn-count.c"
cargo build --quiet --release --locked -p hrm-runtime --features std --example q8_probe --target aarch64-unknown-linux-gnu
BIN="$ROOT/target/aarch64-unknown-linux-gnu/release/examples/q8_probe"
MACS=$((82 * 512 * 1536))
count() { # LEVEL MODE -> instructions of one run
  local level="$1" mode="$2"
  HRM_KERNELS="$level" qemu-aarch64 -L /usr/aarch64-linux-gnu \
    -plugin "$OUT/libinsncount.so,out=$OUT/count.txt" "$BIN" "$mode" 1 1 >/dev/null
  awk '$1 == "insns" {print $2}' "$OUT/count.txt"
}
echo "| HRM_KERNELS | product | instructions | per multiply-add |"
echo "|---|---|---:|---:|"
for level in neon native; do
  base=$(count "$level" none)
  for mode in f32 int8; do
    n=$(($(count "$level" "$mode") - base))
    echo "| $level | $mode | $n | $(awk -v n="$n" -v m="$MACS" 'BEGIN {printf "%.3f", n / m}') |"
  done
done
