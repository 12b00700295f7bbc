#!/usr/bin/env bash
# Mutation testing of the limiter (issue 17; not part of CI: hours on two cores).
# Runs cargo-mutants over the strategy files, multi.rs and keyed.rs, twice:
#   prove  the "prove" surface alone: the property tests (tests/limiter_properties.rs,
#          tests/limiter_conformance.rs) and `hub verify` on the shipped scenarios
#          (tests/hub_verify.rs);
#   whole  the whole suite (cargo test --workspace) — run only on the mutants the prove
#          surface missed (--iterate): the whole suite contains the prove surface, so what
#          one catches the other does too, and the score is the same for a fraction of the time.
# Prints both scores (caught + timeouts over viable mutants) and lists the survivors.
#
# Usage: scripts/mutants.sh [FILE...]     default: every file below
# Env:   OUT (default target/mutants), TIMEOUT (s per test run, default 180),
#        JOBS (cargo build/test jobs inside each run, default 1)
# Needs: cargo install cargo-mutants. Mutates the tree in place (restored after each
#        mutant); do not edit src/limiter while it runs; `git checkout -- src/limiter`
#        if it is interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-target/mutants}
timeout=${TIMEOUT:-180}
jobs=${JOBS:-1}
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(src/limiter/token_bucket.rs src/limiter/gcra.rs src/limiter/sliding_log.rs
         src/limiter/sliding_counter.rs src/limiter/leaky_bucket.rs src/limiter/multi.rs
         src/limiter/keyed.rs)
fi
if ! git diff --quiet -- src/limiter; then
  echo "src/limiter has uncommitted changes: commit or stash them first" >&2
  exit 2
fi
file_args=()
for f in "${files[@]}"; do file_args+=(--file "$f"); done
export CARGO_BUILD_JOBS=$jobs
mkdir -p "$out"

run() { # name, extra cargo-mutants args..., -- test args
  local name=$1; shift
  local start=$SECONDS
  cargo mutants --in-place --no-shuffle --timeout "$timeout" --output "$out/$name" \
    "${file_args[@]}" "$@" >"$out/$name.log" 2>&1 || true
  echo "$name: $((SECONDS - start)) s"
}

score() { # dir → "caught/viable = pct"
  local d=$1/mutants.out
  local c m t u unviable
  # Unviable mutants (they do not build) of this run and of the prove run it iterates on.
  unviable=$(cat "$d/unviable.txt" "$out/prove/mutants.out/unviable.txt" 2>/dev/null | sort -u)
  c=$( (cat "$d/caught.txt" "$d/previously_caught.txt" 2>/dev/null || true) | sort -u |
       grep -vxF -e "${unviable:-@none@}" | grep -c . || true)
  m=$(grep -c . "$d/missed.txt" 2>/dev/null || true)
  t=$(grep -c . "$d/timeout.txt" 2>/dev/null || true)
  u=$(printf '%s\n' "$unviable" | grep -c . || true)
  local viable=$((c + m + t))
  local pct=0
  if [ "$viable" -gt 0 ]; then pct=$(awk "BEGIN { printf \"%.1f\", 100 * ($c + $t) / $viable }"); fi
  echo "caught $c + timeouts $t of $viable viable ($u unviable): $pct %"
}

rm -rf "$out/prove" "$out/whole"
run prove -- --test limiter_properties --test limiter_conformance --test hub_verify
cp -r "$out/prove" "$out/whole"
# Carry the prove run's kills over as "previously caught"; test only its survivors.
cat "$out/whole/mutants.out/caught.txt" "$out/whole/mutants.out/timeout.txt" 2>/dev/null \
  >>"$out/whole/mutants.out/previously_caught.txt" || true
run whole --iterate -- --workspace
echo "files: ${files[*]}"
echo "prove surface: $(score "$out/prove")"
echo "whole suite:   $(score "$out/whole")"
echo "survivors of the whole suite:"
sed 's/^/  /' "$out/whole/mutants.out/missed.txt" 2>/dev/null || true
git checkout -- src/limiter
