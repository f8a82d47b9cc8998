#!/usr/bin/env bash
# Issue 15's measurement: the built-in Sudoku model with `hrm solve sudoku --ensemble 256`
# (symmetries, the valid rule, early exit) on the whole public hard and 17-clue sets, one
# thread per puzzle, all cores busy with different puzzles. Prints a Markdown table (solved at
# K = 1, 4, ..., 256, read from one run: a puzzle counts as solved at K when its first valid
# trajectory is among its first K) with the median, 90th percentile and maximum time a puzzle,
# and writes the per-puzzle record to models/sudoku/ensemble-k256.csv.
#
#   scripts/ensemble-k256.sh [SHARED_DATA_DIR]       # hours on 2 cores: ~1000 x 3 s per set
#   LIMIT=60 scripts/ensemble-k256.sh                # the first 60 puzzles of each set
#   BLOB=other.blob OUT=file.csv scripts/ensemble-k256.sh
#   scripts/ensemble-k256.sh --summarise SET=TRAJECTORIES.csv[,PART2.csv...] ...
#                                                    # the table and record from runs already made
#                                                    # (`hrm solve sudoku --trajectories-out`),
#                                                    # a set's parts in puzzle order
set -euo pipefail
cd "$(dirname "$0")/.."

summarise() {
  python3 - "${OUT:-models/sudoku/ensemble-k256.csv}" "$@" <<'PY'
import csv, math, sys
out, sets = sys.argv[1], sys.argv[2:]
ks = [1, 4, 16, 64, 128, 256]
record = [["set", "puzzle", "first_valid_trajectory", "trajectories_run", "segments_run", "seconds"]]
print("| set | puzzles | " + " | ".join(f"K = {k}" for k in ks) + " | time a puzzle: median / p90 / max |")
print("|---|---:|" + "---:|" * len(ks) + "---|")
for spec in sets:
    name, files = spec.split("=", 1)
    puzzles = []  # (first valid trajectory or -1, trajectories, segments, seconds or None)
    for f in files.split(","):
        part = {}
        with open(f, newline="") as fh:
            for row in csv.DictReader(fh):
                p = part.setdefault(int(row["puzzle"]), [-1, 0, 0, None])
                p[1] += 1
                p[2] += int(row["segments"])
                if p[0] < 0 and int(row["first_valid_segment"]) >= 0:
                    p[0] = int(row["trajectory"])
                if row.get("puzzle_seconds"):
                    p[3] = float(row["puzzle_seconds"])
        puzzles += [part[i] for i in sorted(part)]
    n = len(puzzles)
    cells = []
    for k in ks:
        solved = sum(1 for p in puzzles if 0 <= p[0] < k)
        cells.append(f"{solved}/{n} = {100 * solved / n:.1f} %")
    times = sorted(p[3] for p in puzzles if p[3] is not None)
    at = lambda q: times[max(0, math.ceil(len(times) * q) - 1)]  # as `hrm solve` reports them
    timing = f"{at(0.5):.2f} / {at(0.9):.2f} / {times[-1]:.2f} s" if len(times) == n else "(no times in the input)"
    print(f"| {name} | {n} | " + " | ".join(cells) + f" | {timing} |")
    for i, p in enumerate(puzzles, 1):
        record.append([name, i, p[0], p[1], p[2], "" if p[3] is None else f"{p[3]:.3f}"])
with open(out, "w", newline="") as fh:
    csv.writer(fh, lineterminator="\n").writerows(record)
print(f"(per puzzle: {out})", file=sys.stderr)
PY
}

if [ "${1:-}" = "--summarise" ]; then
  shift
  summarise "$@"
  exit
fi

data="${1:-../shared/data/sudoku}"
[ -d "$data" ] || { echo "no $data: the public Sudoku sets are in ../shared/data/sudoku" >&2; exit 1; }
cargo build --release --locked --bin hrm >&2
hrm=target/release/hrm
model=()
[ -n "${BLOB:-}" ] && model=(--model "$BLOB")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sets=()
for set in hard-1000 seventeen-1000; do
  file="$data/$set.csv"
  if [ -n "${LIMIT:-}" ]; then
    head -n "$((LIMIT + 1))" "$file" >"$tmp/$set.csv"
    file="$tmp/$set.csv"
  fi
  echo "$set: K = 256 on $(nproc) threads ..." >&2
  "$hrm" solve sudoku "${model[@]}" --file "$file" --ensemble 256 --threads "$(nproc)" \
    --trajectories-out "$tmp/$set-trajectories.csv" >/dev/null
  sets+=("$set=$tmp/$set-trajectories.csv")
done
summarise "${sets[@]}"
