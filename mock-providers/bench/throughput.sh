#!/usr/bin/env bash
# Throughput of the mock vs a bare axum handler, same machine, same session, loopback only.
# Needs: release builds (cargo build --release -p mock-providers --bin mock-providers
# --example bare) and wrk. Usage: bench/throughput.sh [rounds] [seconds] [connections]
# For each round and server: wrk req/s, and server CPU time per request (utime+stime from
# /proc, so a busy neighbour slows req/s but not the CPU cost). Bounded: rounds × 2 × seconds.
# BENCH_BIN=dir takes the binaries from another directory (e.g. a saved earlier build).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}; secs=${2:-10}; conns=${3:-64}
bin=${BENCH_BIN:-target/release}
lua=mock-providers/bench/chat.lua
tick=$(getconf CLK_TCK)

"$bin/mock-providers" --config mock-providers/bench/perf.toml --addr 127.0.0.1:18080 >/dev/null 2>&1 &
mock_pid=$!
"$bin/${BENCH_BARE:-examples/bare}" 127.0.0.1:18081 >/dev/null 2>&1 &
bare_pid=$!
trap 'kill $mock_pid $bare_pid 2>/dev/null || true' EXIT
sleep 1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # name pid port
  local before after out rps reqs
  before=$(cpu_ticks "$2")
  out=$(wrk -t2 -c"$conns" -d"${secs}s" -s "$lua" "http://127.0.0.1:$3/v1/chat/completions")
  after=$(cpu_ticks "$2")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  awk -v n="$1" -v r="$rps" -v q="$reqs" -v c=$((after - before)) -v t="$tick" -v e="${non2xx:-0}" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN { printf "%-5s req/s %9.0f  cpu/req %6.1f us  non-2xx %s  load %s\n", n, r, c / t / q * 1e6, e, l }'
}

for i in $(seq "$rounds"); do
  run mock "$mock_pid" 18080
  run bare "$bare_pid" 18081
done
