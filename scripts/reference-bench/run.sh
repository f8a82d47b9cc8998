#!/usr/bin/env bash
# One ACT segment of the 27M HRM Sudoku model timed in PyTorch, ONNX Runtime and hrm, side by
# side (see README.md beside this file).
#
#   scripts/reference-bench/run.sh [--out FILE] [other bench.py options]
#
# GOLDEN=DIR takes the golden cases from DIR (default tests/fixtures/golden).
# BENCH_LOCK=FILE runs the builds and the measurements under flock(1) on FILE, so that other
# heavy jobs that take the same lock never overlap them.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the source tree
venv="$root/target/reference-venv"
bin="$root/target/reference-bench/bin"

step() { echo "run.sh: $* (${SECONDS} s)" >&2; }
heavy() {
    if [[ -n "${BENCH_LOCK:-}" ]]; then flock "$BENCH_LOCK" "$@"; else "$@"; fi
}

step "Python packages"
# 1. Python packages, pinned, from PyPI; reinstalled only when requirements.txt changes.
if ! cmp -s "$here/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi
"$venv/bin/python" -c 'import torch; assert torch.ones(2).sum().item() == 2'

step "building hrm and segment_time"
# 2. hrm (with `convert`: default features) and the segment timer, copied aside so that a later
#    build of a different feature set in the shared target/ cannot swap them mid-run.
heavy sh -c 'cargo build --release --quiet --bin hrm &&
    cargo build --release --quiet -p hrm-tests --example segment_time &&
    mkdir -p "$1" && cp target/release/hrm target/release/examples/segment_time "$1/"' sh "$bin"

step "checking hrm_torch.py against the golden outputs"
# 3. The PyTorch module is the reference computation: the official code's golden outputs.
golden="${GOLDEN:-$root/tests/fixtures/golden}"
heavy "$venv/bin/python" "$here/hrm_torch.py" check "$golden/hrm-sudoku-tiny" "$golden/hrm-maze-learned"

step "bench.py"
# 4. The benchmark.
heavy "$venv/bin/python" "$here/bench.py" --hrm "$bin/hrm" --segment-time "$bin/segment_time" "$@"
step "done"
