#!/usr/bin/env bash
# Adaptive halting with and without the rule check, against all segments: the built-in blob on
# the generated held-out sets of evaluate.sh (500 puzzles of each number of givens, seeds
# 1025..1050), one thread. `hrm solve sudoku --adaptive` stops a puzzle at its first segment
# whose answer is a valid completion and overrules a Q-halt on an invalid one; `--no-rules`
# leaves the Q head alone (what `hrm eval --adaptive` does).
#
#   models/sudoku/adaptive.sh        # prints a Markdown table (about 2 minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked --bin hrm >&2
hrm=target/release/hrm
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# "N/500 answers are valid completions (P%), S segments per puzzle" and, for ensembles, the
# median time: valid %, segments, median ms.
run() {
  "$hrm" solve sudoku --file "$1" --threads 1 "${@:2}" 2>&1 >/dev/null | python3 -c '
import re, sys
text = sys.stdin.read()
valid = re.search(r"\(([\d.]+)%\), ([\d.]+) segments per puzzle", text)
median = re.search(r"median ([\d.]+) s", text)
print(valid.group(1), valid.group(2), "%.0f" % (1000 * float(median.group(1))) if median else "-")'
}

echo "| givens | all segments | adaptive, Q head only (\`--no-rules\`) | segments | adaptive with the rule check | segments | median time a puzzle |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for g in 25 30 35 40 45 50; do
  "$hrm" generate sudoku --givens "$g" --count 500 --seed $((1000 + g)) --out "$tmp/g$g.csv" 2>/dev/null
  read -r all _ _ < <(run "$tmp/g$g.csv")
  read -r qonly qseg _ < <(run "$tmp/g$g.csv" --adaptive --no-rules)
  read -r rules rseg rms < <(run "$tmp/g$g.csv" --adaptive)
  echo "| $g | $all % | $qonly % | $qseg | **$rules %** | **$rseg** | $rms ms |"
done
