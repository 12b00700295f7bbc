#!/usr/bin/env bash
# Scheduler lateness of `hub run`: lateness = sent_ms - intended_start_ms - limiter_wait_ms
# per request, from requests.csv; prints p50/p90/p99/p99.9/max in ms, the achieved rate,
# and the load average (a busy neighbour core shows up here, so quote it with the figure).
# Usage: benches/harness/lateness.sh [rounds]   (needs: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq "$rounds"); do
  target/release/hub run benches/harness/lateness.toml --out "$out/r$i" >/dev/null
  csv="$out/r$i/requests.csv"
  # lateness and send time per request, sorted by lateness
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $col["sent_ms"] != "" { print $col["sent_ms"] - $col["intended_start_ms"] - $col["limiter_wait_ms"], $col["sent_ms"] }' \
    "$csv" | sort -g > "$out/late"
  awk -v load="$(cut -d' ' -f1-3 /proc/loadavg)" '
    { n++; v[n] = $1; if ($2 > last) last = $2 }
    END {
      printf "requests %d  rate %.0f/s  lateness ms p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f  load %s\n",
        n, n / (last / 1000), v[int(n * 0.5)], v[int(n * 0.9)], v[int(n * 0.99)], v[int(n * 0.999)], v[n], load
    }' "$out/late"
done
