#!/usr/bin/env bash
# The gateway's overhead, measured in the same run against the same zero-latency mock:
# directly and through `hub serve` (memory backend, a generous limiter so every request
# goes through admission and reconciliation), 64 connections, closed loop, non-streaming
# then streaming. Prints each round and the medians over rounds:
#   throughput ratio (gateway / direct; target >= 0.7),
#   added median latency (target <= 150 us),
#   added streaming time-to-first-chunk p99 (target <= 1 ms).
# Usage: benches/gateway/overhead.sh [rounds] [seconds] [connections]
# PROFILE=release (default) builds with --release; PROFILE=dev uses the debug build
# (numbers then say nothing about the targets). Bounded: rounds x 4 x seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}; secs=${2:-5}; conns=${3:-64}
profile=${PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build -j 1 --release --bin hub --example gateway_load; bin=target/release
else
  cargo build -j 1 --bin hub --example gateway_load; bin=target/debug
fi
tmp=$(mktemp -d)
cat >"$tmp/gateway.toml" <<TOML
[gateway]
[[gateway.tenant]]
name = "bench"
key_env = "BENCH_GW_KEY"
max_wait = "5s"
[[upstream]]
id = "mock"
kind = "openai"
url = "http://127.0.0.1:18090/v1"
api_key_env = "BENCH_UP_KEY"
models = ["gpt-4o-mini"]
limiter = "generous"
[[limiter]]
name = "generous"
strategy = "token_bucket"
limits = { rpm = 1000000000, tpm = 1000000000000 }
TOML
"$bin/hub" mock --config mock-providers/bench/perf.toml --addr 127.0.0.1:18090 >/dev/null 2>&1 &
mock_pid=$!
BENCH_GW_KEY=gw-bench BENCH_UP_KEY=sk-bench HUB_LOG=warn \
  "$bin/hub" serve --config "$tmp/gateway.toml" --addr 127.0.0.1:18091 >/dev/null 2>&1 &
gw_pid=$!
trap 'kill $mock_pid $gw_pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:18091/readyz >/dev/null 2>&1 && break; sleep 0.1
done

drive() { # url key [--stream]
  "$bin/examples/gateway_load" --url "$1" --key "$2" --conns "$conns" --secs "$secs" ${3:-}
}
field() { sed -E "s/.*\"$2\":([0-9.]+).*/\1/" <<<"$1"; }

direct=http://127.0.0.1:18090/v1/chat/completions
gateway=http://127.0.0.1:18091/v1/chat/completions
: >"$tmp/rounds"
for i in $(seq "$rounds"); do
  d=$(drive "$direct" sk-bench); g=$(drive "$gateway" gw-bench)
  ds=$(drive "$direct" sk-bench --stream); gs=$(drive "$gateway" gw-bench --stream)
  ratio=$(awk -v a="$(field "$g" rps)" -v b="$(field "$d" rps)" 'BEGIN{printf "%.3f", a/b}')
  added=$(( $(field "$g" p50_us) - $(field "$d" p50_us) ))
  ttfc=$(( $(field "$gs" first_p99_us) - $(field "$ds" first_p99_us) ))
  echo "round $i: direct $(field "$d" rps) req/s p50 $(field "$d" p50_us) us; gateway $(field "$g" rps) req/s p50 $(field "$g" p50_us) us; ratio $ratio; added p50 ${added} us; added stream TTFC p99 ${ttfc} us (load $(cut -d' ' -f1 /proc/loadavg))"
  echo "$ratio $added $ttfc" >>"$tmp/rounds"
done
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "median over $rounds rounds ($profile build, $conns connections):" \
  "throughput ratio $(cut -d' ' -f1 "$tmp/rounds" | median) (>= 0.7)," \
  "added p50 $(cut -d' ' -f2 "$tmp/rounds" | median) us (<= 150)," \
  "added stream TTFC p99 $(cut -d' ' -f3 "$tmp/rounds" | median) us (<= 1000)"
