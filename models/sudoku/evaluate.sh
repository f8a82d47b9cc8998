#!/usr/bin/env bash
# Re-measures every figure of models/sudoku/README.md: exact accuracy by number of givens on
# generated held-out puzzles (seeds 1025..1050, never the training seed), and on the public hard
# and 17-clue sets of ../shared/data/sudoku, with the full segment count and with adaptive
# halting, on the built-in blob, one thread (per-puzzle latency).
#
#   models/sudoku/evaluate.sh [SHARED_DATA_DIR]      # prints a Markdown table
#   BLOB=candidate.blob models/sudoku/evaluate.sh    # the same table for another blob
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked --bin hrm >&2
hrm=target/release/hrm
blob="${BLOB:-models/sudoku/sudoku.blob}"
data="${1:-../shared/data/sudoku}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

row() { # name file
  local fixed adaptive
  fixed=$("$hrm" eval "$blob" --task sudoku --data "$2" --threads 1 --json)
  adaptive=$("$hrm" eval "$blob" --task sudoku --data "$2" --threads 1 --adaptive --json)
  python3 - "$1" "$fixed" "$adaptive" <<'PY'
import json, sys
name, f, a = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ms = lambda r: 1000 * r["seconds"] / r["examples"]
print(f"| {name} | {f['examples']} | {100*f['exact_accuracy']:.1f} % | {100*f['blank_accuracy']:.1f} % | "
      f"{ms(f):.1f} ms | {100*a['exact_accuracy']:.1f} % | {a['mean_segments']:.2f} | {ms(a):.1f} ms |")
PY
}

echo "| puzzles | count | exact (all segments) | blank cells | time/puzzle | exact (adaptive) | mean segments | time/puzzle |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for g in 25 30 35 40 45 50; do
  "$hrm" generate sudoku --givens "$g" --count 500 --seed $((1000 + g)) --out "$tmp/g$g.csv"
  row "generated, $g givens" "$tmp/g$g.csv"
done
if [ -d "$data" ]; then
  row "hard-1000 (21–26 givens)" "$data/hard-1000.csv"
  row "seventeen-1000 (17 givens)" "$data/seventeen-1000.csv"
else
  echo "(no $data: the public sets were skipped)" >&2
fi
