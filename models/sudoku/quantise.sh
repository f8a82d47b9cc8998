#!/usr/bin/env bash
# Re-measures the accuracy table of QUANTISATION.md: the built-in Sudoku model converted to every
# weight format and to the fixed-point path, exact accuracy on held-out generated puzzles (the
# seeds of evaluate.sh, never the training seed), on 3,000 more 25-givens puzzles compared
# puzzle by puzzle with f32, and on the public hard set, with blob and arena sizes. Calibration
# (fixed-point formats, int4 error compensation) runs on its own seed 7, 25 givens.
#
#   models/sudoku/quantise.sh [SHARED_DATA_DIR]      # prints a Markdown table
#   FORMATS="f32 fixed" models/sudoku/quantise.sh    # some rows only (f32 first: the others
#                                                     # are compared with it on the 3,000)
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
"$hrm" generate sudoku --givens 25 --count 3000 --seed 3025 --out "$tmp/g25x3000.csv"
sets+=("$tmp/g25x3000.csv")
if [ -f "$data/hard-1000.csv" ]; then sets+=("$data/hard-1000.csv"); fi
# Calibration inputs: generated puzzles of another seed, as hard as the hardest held-out set (the
# model recurs longest on those, so they show it the widest range of states).
"$hrm" generate sudoku --givens 25 --count 256 --seed 7 --out "$tmp/calibration.csv"

# Exact accuracy of predictions $1 on the CSV $2, and with a third argument (the f32 predictions)
# the paired difference against those, with its standard error.
score() {
  python3 - "$@" <<'PY'
import math, sys
preds, data = sys.argv[1], sys.argv[2]
solutions = [l.strip().split(",")[1] for l in open(data) if "," in l and not l.startswith("puzzle")]
def right(path):
    return [p.strip() == s for p, s in zip(open(path), solutions)]
mine = right(preds)
out = "%.1f %%" % (100 * sum(mine) / len(mine))
if len(sys.argv) > 3:
    base = right(sys.argv[3])
    won = sum(m and not b for m, b in zip(mine, base))
    lost = sum(b and not m for m, b in zip(mine, base))
    n = len(mine)
    se = math.sqrt(won + lost - (won - lost) ** 2 / n) / n
    out += " (%+.1f ± %.1f)" % (100 * (won - lost) / n, 100 * se)
print(out)
PY
}

header="| format | blob bytes | of f32 | arena bytes |"
rule="|---|---:|---:|---:|"
for s in "${sets[@]}"; do
  name=$(basename "$s" .csv)
  case "$name" in
    g25x3000) name="25 givens × 3,000, vs f32" ;;
    g*) name="${name#g} givens" ;;
  esac
  header="$header $name |"
  rule="$rule---:|"
done
echo "$header"
echo "$rule"
f32_bytes=""
formats="${FORMATS:-f32 f16 bf16 int8 int4 int4-gptq fixed}"
case "$formats" in
  f32 | "f32 "*) ;;
  *) echo "quantise.sh: FORMATS must start with f32 (the others are compared with it)" >&2 && exit 2 ;;
esac
for format in $formats; do
  blob="$tmp/$format.blob"
  case "$format" in
    fixed) "$hrm" convert "$model" --out "$blob" --weights int8 --activations fixed \
      --calibrate "$tmp/calibration.csv" 2>/dev/null ;;
    int4-gptq) "$hrm" convert "$model" --out "$blob" --weights int4 --calibrate "$tmp/calibration.csv" 2>/dev/null ;;
    *) "$hrm" convert "$model" --out "$blob" --weights "$format" 2>/dev/null ;;
  esac
  bytes=$(stat -c %s "$blob")
  f32_bytes="${f32_bytes:-$bytes}"
  arena=$("$hrm" inspect "$blob" | awk '$1 == "arena" {print $2}')
  case "$format" in
    fixed) label="int8 + fixed point" ;;
    int4) label="int4, plain rounding" ;;
    int4-gptq) label="int4, error-compensated (\`--calibrate\`)" ;;
    *) label="$format" ;;
  esac
  line="| $label | $bytes | $(awk -v a="$bytes" -v b="$f32_bytes" 'BEGIN {printf "%.1f %%", 100 * a / b}') | $arena |"
  for s in "${sets[@]}"; do
    name=$(basename "$s" .csv)
    "$hrm" eval "$blob" --task sudoku --data "$s" --predictions "$tmp/$format.$name.txt" --json >/dev/null
    if [ "$name" = g25x3000 ]; then
      acc=$(score "$tmp/$format.$name.txt" "$s" "$tmp/f32.$name.txt")
    else
      acc=$(score "$tmp/$format.$name.txt" "$s")
    fi
    line="$line $acc |"
  done
  echo "$line"
done
