#!/usr/bin/env bash
# The paper-scale training recipe on an NVIDIA GPU (issue 16: "GPU recipe ready to run").
#
#   scripts/gpu-train.sh build
#       On any x86-64 Linux machine, no GPU needed: release `hrm` with the `cuda` feature
#       (scripts/cuda.sh build: CUDA 13.0 from PyPI wheels, about 7 minutes on 2 cores), copied
#       to target/gpu/hrm. It runs where the NVIDIA driver (580 or newer) is installed.
#   scripts/gpu-train.sh run TASK [MINUTES] [OUT] [DEVICE]
#       On the GPU machine: `hrm train --task TASK --preset paper --device DEVICE` (default
#       cuda; `cpu` for the comparison) for MINUTES (default 10) into OUT (default
#       runs/TASK-paper), then prints steps/s and the loss curve from OUT/metrics.jsonl.
#       TASK: sudoku (TRM mlp_t, h 512, 16 segments, batch 768, 1,000 generated puzzles of
#       22–30 givens, as Sudoku-Extreme-1K) or maze (TRM with attention, 30×30, 1,000
#       generated mazes, as Maze-Hard-1K). Resume a run with RESUME=1.
#
# HRM=path picks the binary (default target/gpu/hrm). When the CUDA libraries are not on the
# library path, the ones PyTorch's pip packages bring are used if present (nvidia/cu13/lib).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  build)
    scripts/cuda.sh build
    mkdir -p target/gpu
    cp target/cuda-release/release/hrm target/gpu/hrm
    echo "gpu-train: target/gpu/hrm ($(du -h target/gpu/hrm | cut -f1))"
    ;;
  run)
    task="${2:?gpu-train.sh run TASK [MINUTES] [OUT] [DEVICE]}"
    minutes="${3:-10}"
    out="${4:-runs/$task-paper}"
    device="${5:-cuda}"
    hrm="${HRM:-target/gpu/hrm}"
    [ -x "$hrm" ] || { echo "gpu-train: no $hrm (scripts/gpu-train.sh build makes it)" >&2; exit 1; }
    if ! ldconfig -p 2>/dev/null | grep -q libcublas.so.13; then
      lib="$(python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)"
      if [ -z "$lib" ] || [ ! -e "$lib/libcublas.so.13" ]; then
        lib="$(dirname "$(find / -name 'libcublas.so.13' -not -path '/proc/*' 2>/dev/null | head -n 1)")"
      fi
      if [ -n "$lib" ] && [ -d "$lib" ]; then export LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}"; fi
    fi
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    case "$task" in
      sudoku) data=(--arch trm --givens 22..=30 --pool 1000) ;;
      maze) data=(--arch trm --pool 1000) ;;
      *) echo "gpu-train: TASK is sudoku or maze" >&2; exit 1 ;;
    esac
    resume=()
    if [ -n "${RESUME:-}" ]; then resume=(--resume); fi
    started=$SECONDS
    "$hrm" train --task "$task" "${data[@]}" --preset paper --device "$device" \
      --max-minutes "$minutes" --eval-every 0 --seed 0 --out "$out" "${resume[@]}"
    echo "gpu-train: $task on $device, $((SECONDS - started)) s in all (data preparation included)"
    python3 - "$out/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steps = [r for r in rows if "loss" in r]
if not steps:
    sys.exit("gpu-train: no training steps logged")
last = steps[-1]
print(f"gpu-train: {last['step']} steps, {last['steps_per_s']:.3f} steps/s, "
      f"{last['elapsed_s']:.0f} s of training")
print("step,loss,lm_loss,q_loss,accuracy,steps_per_s")
for r in steps[:: max(1, len(steps) // 20)] + ([last] if len(steps) % 20 else []):
    print(f"{r['step']},{r['loss']:.4f},{r['lm_loss']:.4f},{r['q_loss']:.4f},{r['accuracy']:.4f},{r['steps_per_s']:.3f}")
PY
    ;;
  *)
    sed -n '2,20p' "$0"
    exit 1
    ;;
esac
