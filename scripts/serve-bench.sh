#!/usr/bin/env bash
# `hrm serve` under load with a real load generator (oha, from crates.io): requests/s, p50/p99
# latency and the share of 503s against workers and client concurrency, and the server's RSS
# before and after. The results go to target/serve-bench/results.md (BENCHMARKS.md keeps a copy).
#
#   scripts/serve-bench.sh [SECONDS]     each load for SECONDS (default 60)
#
# Needs oha: cargo install oha --locked (a few minutes). The request is the built-in model on
# one puzzle of 22 givens with `ensemble: 1` (8 segments, fixed work per request).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
out="target/serve-bench"
mkdir -p "$out"
command -v oha >/dev/null || { echo "serve-bench: needs oha (cargo install oha --locked)" >&2; exit 1; }
cargo build --release --locked --no-default-features --bin hrm >&2
hrm="target/release/hrm"
body="$out/body.json"
echo '{"puzzles": ["..7....89.5.3...4......7.3..6.79..2.3.......8.....6....76......42..........2..19."]}' >"$body"

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
flags="$(grep -m1 '^flags' /proc/cpuinfo | grep -o -w 'avx512f\|avx512_vnni\|avx2\|fma\|avx_vnni' | sort -u | tr '\n' ' ')"
{
  echo "Machine: $cpu, $(nproc) cores, flags: $flags"
  echo "Command: scripts/serve-bench.sh $seconds (oha $(oha --version | awk '{print $2}'), $seconds s per row)"
  echo
  echo "| workers | queue | clients | answers/s (200) | all responses/s | p50 ms | p99 ms | 200 | 503 | 504 | RSS before → after (KiB) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
} >"$out/results.md"

for workers in 1 2; do
  for clients in "$workers" $((workers * 4)) 64; do
    queue=$((workers * 2))
    log="$out/server-$workers-$clients.log"
    "$hrm" serve --addr 127.0.0.1:0 --workers "$workers" --queue "$queue" --timeout-ms 5000 2>"$log" &
    pid=$!
    port=""
    for _ in $(seq 100); do
      port="$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1 | sed 's/.*://' || true)"
      [ -n "$port" ] && break
      sleep 0.1
    done
    [ -n "$port" ] || { echo "the server did not start: $(cat "$log")" >&2; exit 1; }
    # A short warm-up, then the measured load.
    # The load generator at the lowest priority: on a small machine it would otherwise take the
    # cores the workers need (its clients stand for remote ones).
    nice -n 19 oha --no-tui -z 3s -c "$clients" -m POST -T application/json -D "$body" "http://127.0.0.1:$port/v1/sudoku" >/dev/null
    before="$(rss "$pid")"
    nice -n 19 oha --no-tui --output-format json -z "${seconds}s" -c "$clients" -m POST -T application/json -D "$body" \
      "http://127.0.0.1:$port/v1/sudoku" >"$out/oha-$workers-$clients.json"
    after="$(rss "$pid")"
    kill -TERM "$pid"
    wait "$pid"
    python3 - "$out/oha-$workers-$clients.json" "$workers" "$queue" "$clients" "$before" "$after" >>"$out/results.md" <<'EOF'
import json, sys
path, workers, queue, clients, before, after = sys.argv[1:]
r = json.load(open(path))
codes = r.get("statusCodeDistribution", {})
p = r["latencyPercentiles"]
ok = codes.get("200", 0)
total = r["summary"]["total"]
print(f"| {workers} | {queue} | {clients} | {ok / total:.1f} | {r['summary']['requestsPerSec']:.1f} | {p['p50'] * 1000:.1f} | {p['p99'] * 1000:.1f} | "
      f"{ok} | {codes.get('503', 0)} | {codes.get('504', 0)} | {before} → {after} |")
EOF
  done
done
cat "$out/results.md"
