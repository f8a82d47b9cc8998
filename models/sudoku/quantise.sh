#!/usr/bin/env bash
# Re-measures the accuracy table of QUANTISATION.md: the built-in Sudoku model converted to every
# weight format and to the fixed-point path, exact accuracy on held-out generated puzzles (the
# seeds of evaluate.sh, never the training seed; calibration on its own seed 7) and on the public
# hard set, with blob and arena sizes.
#
#   models/sudoku/quantise.sh [SHARED_DATA_DIR]      # prints a Markdown table
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked --bin hrm >&2
hrm=target/release/hrm
model=models/sudoku
data="${1:-../shared/data/sudoku}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sets=()
for g in 25 30 35 40; do
  "$hrm" generate sudoku --givens "$g" --count 500 --seed $((1000 + g)) --out "$tmp/g$g.csv"
  sets+=("$tmp/g$g.csv")
done
if [ -f "$data/hard-1000.csv" ]; then sets+=("$data/hard-1000.csv"); fi
# Calibration inputs: generated puzzles of another seed (35 givens, the middle of the range).
"$hrm" generate sudoku --givens 35 --count 256 --seed 7 --out "$tmp/calibration.csv"

header="| format | blob bytes | of f32 | arena bytes |"
rule="|---|---:|---:|---:|"
for s in "${sets[@]}"; do
  header="$header $(basename "$s" .csv) |"
  rule="$rule---:|"
done
echo "$header" | sed -e 's/| g\([0-9]*\) |/| \1 givens |/g' -e 's/| g\([0-9]*\) |/| \1 givens |/g'
echo "$rule"
f32_bytes=""
for format in f32 f16 bf16 int8 int4 fixed; do
  blob="$tmp/$format.blob"
  case "$format" in
    fixed) "$hrm" convert "$model" --out "$blob" --weights int8 --activations fixed \
      --calibrate "$tmp/calibration.csv" 2>/dev/null ;;
    *) "$hrm" convert "$model" --out "$blob" --weights "$format" 2>/dev/null ;;
  esac
  bytes=$(stat -c %s "$blob")
  f32_bytes="${f32_bytes:-$bytes}"
  arena=$("$hrm" inspect "$blob" | awk '$1 == "arena" {print $2}')
  line="| ${format/fixed/int8 + fixed point} | $bytes | $(awk -v a="$bytes" -v b="$f32_bytes" 'BEGIN {printf "%.1f %%", 100 * a / b}') | $arena |"
  for s in "${sets[@]}"; do
    acc=$("$hrm" eval "$blob" --task sudoku --data "$s" --json | python3 -c 'import json,sys; print("%.1f %%" % (100 * json.load(sys.stdin)["exact_accuracy"]))')
    line="$line $acc |"
  done
  echo "$line"
done
