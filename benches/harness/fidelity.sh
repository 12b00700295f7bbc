#!/usr/bin/env bash
# Simulator fidelity: runs three shipped scenarios live (`hub run`, real HTTP against the
# embedded mock, real time) and simulated (`hub simulate`, virtual time) with the same
# `--duration`, and prints, per scenario and limiter, live / simulated (difference) for
# completed, throttled ratio, goodput (TPM), latency p50 and p99, and TTFT p50 — ratios
# differ in percentage points, everything else in % of the live value. Marks against the
# fidelity targets: throttled ratio within 1 pp, completed and goodput within 3 %, latency
# p50 within 10 % (✓ / ✗; p99 and TTFT are shown, not targeted).
#
# The scenarios: quickstart (Azure, 1-s request window, half streamed), azure-10s-window
# (Azure, not streamed), closed-loop (OpenAI, all streamed, closed loop). Live runs take their
# duration per limiter plus up to the 5-s drain: about 4 minutes in all at the default
# durations; FIDELITY_DURATIONS="10s 20s 20s" shortens the last two (fewer samples).
#
# Both modes draw the same per-request output lengths and times to first token (the
# simulator uses the mock's own per-request streams, numbered in arrival order), so the
# differences left are the simulator's simplifications (no network delay, mean per-token
# intervals, exact FIFO instants) plus any reordering of concurrent sends.
#
# Output: a Markdown table on stdout (paste it into a note), with the load average before
# and after (a busy neighbour core slows live runs: quote it with the figures); progress on
# stderr. Measures, does not gate: exit 0 unless a run fails (exit 3, a failed scenario
# threshold, counts as a completed run).
# Usage: benches/harness/fidelity.sh
#   HUB=path/to/hub (default target/release/hub, built with `cargo build --release -j 1`
#   when missing); OUT=dir keeps the reports there (default: a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/../.."
HUB=${HUB:-target/release/hub}
if [ ! -x "$HUB" ]; then
  echo "building $HUB" >&2
  cargo build --release -j 1 >&2
fi
scenarios=(quickstart azure-10s-window closed-loop)
read -r -a durations <<<"${FIDELITY_DURATIONS:-10s 30s 30s}"
if [ "${#durations[@]}" -ne "${#scenarios[@]}" ]; then
  echo "FIDELITY_DURATIONS needs ${#scenarios[@]} durations, got '${durations[*]}'" >&2
  exit 2
fi
if [ -n "${OUT:-}" ]; then
  out=$OUT
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi

# Runs `hub MODE FILE`; exit 0 (thresholds held) and 3 (a threshold failed) both mean the
# run completed. Anything else stops the script with the run's log.
hub_run() {
  local mode=$1 file=$2 dir=$3 duration=$4 rc=0
  "$HUB" "$mode" "$file" --out "$dir" --duration "$duration" >"$dir.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
    echo "hub $mode $file failed (exit $rc):" >&2
    cat "$dir.log" >&2
    exit 1
  fi
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$SECONDS
args=()
for i in "${!scenarios[@]}"; do
  name=${scenarios[$i]} duration=${durations[$i]}
  file=scenarios/$name.toml
  echo "$name: live ($duration per limiter)…" >&2
  t0=$SECONDS
  hub_run run "$file" "$out/$name-live" "$duration"
  echo "$name: live took $((SECONDS - t0)) s; simulating…" >&2
  hub_run simulate "$file" "$out/$name-sim" "$duration"
  args+=("$name" "$duration" "$out/$name-live/summary.json" "$out/$name-sim/summary.json")
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$load_before" "$load_after" "$((SECONDS - started))" "${args[@]}" <<'EOF'
import json
import sys

load_before, load_after, elapsed = sys.argv[1:4]
rest = sys.argv[4:]
# (label, how to read it, kind, target): kind "pp" = difference in percentage points of a
# ratio, "%" = relative difference; target = the largest |difference| that passes.
METRICS = [
    ("completed", lambda l: l["completed"], "%", 3.0),
    ("throttled ratio", lambda l: l["throttled_ratio"], "pp", 1.0),
    ("goodput TPM", lambda l: l["goodput_tpm"], "%", 3.0),
    ("latency p50 ms", lambda l: l["latency_ms"]["p50"], "%", 10.0),
    ("latency p99 ms", lambda l: l["latency_ms"]["p99"], "%", None),
    ("TTFT p50 ms", lambda l: (l.get("ttft_ms") or {}).get("p50"), "%", None),
]


def fmt(v, kind):
    if v is None:
        return "—"
    if kind == "pp":
        return f"{v:.3f}"
    return f"{v:.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.1f}"


def cell(live, sim, kind, target, tally, label):
    if live is None and sim is None:
        return "—"
    text = f"{fmt(live, kind)} / {fmt(sim, kind)}"
    if live is None or sim is None:
        return text
    if kind == "pp":
        diff = (sim - live) * 100.0
        shown = f"{diff:+.1f} pp"
    elif live == 0:
        diff = 0.0 if sim == 0 else float("inf")
        shown = "±0 %" if sim == 0 else "n/a"
    else:
        diff = (sim - live) / live * 100.0
        shown = f"{diff:+.1f} %"
    text += f" ({shown})"
    if target is not None:
        ok = abs(diff) <= target
        tally.setdefault(label, [0, 0])
        tally[label][0] += ok
        tally[label][1] += 1
        text += " ✓" if ok else " ✗"
    return text


print(f"Simulator fidelity: live / simulated (difference), per limiter. Load average "
      f"{load_before} before, {load_after} after; {elapsed} s in all.")
print()
print("| scenario (duration) | limiter | " + " | ".join(m[0] for m in METRICS) + " |")
print("|---|---|" + "---|" * len(METRICS))
tally = {}
for i in range(0, len(rest), 4):
    name, duration, live_path, sim_path = rest[i:i + 4]
    with open(live_path) as f:
        live = {l["name"]: l for l in json.load(f)["limiters"]}
    with open(sim_path) as f:
        sim = {l["name"]: l for l in json.load(f)["limiters"]}
    for lname, l in live.items():
        s = sim.get(lname)
        cells = []
        for label, get, kind, target in METRICS:
            lv = get(l)
            sv = get(s) if s is not None else None
            cells.append(cell(lv, sv, kind, target, tally, label))
        print(f"| {name} ({duration}) | {lname} | " + " | ".join(cells) + " |")
print()
print("Targets: throttled ratio within 1 pp, completed and goodput within 3 %, latency p50 "
      "within 10 % (✓ / ✗); p99 and TTFT (streamed requests only) are not targeted. Met: "
      + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in tally.items()) + ".")
EOF
