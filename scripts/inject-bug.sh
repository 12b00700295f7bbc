#!/usr/bin/env bash
# Injects one of the four known limiter bugs of issue 17 into the working tree, so anyone
# can check that the property tests and `hub verify` still catch it:
#   a  token bucket refills 1 % too fast        (gained × (amount + amount/100 + 1))
#   b  sliding log: an entry leaves 1 ns early  (t − at < window − 1)
#   c  several dimensions: only the first is checked before the all-or-nothing commit
#   d  token bucket wait rounded down           (missing / amount)
# Usage: scripts/inject-bug.sh <a|b|c|d>      Revert: git checkout -- src/limiter
# Never commit an injected bug. scripts/prove-bugs.sh runs the whole check.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  a) patch=a-token-bucket-refills-1pct-fast ;;
  b) patch=b-sliding-log-entry-leaves-1ns-early ;;
  c) patch=c-multi-checks-only-first-dimension ;;
  d) patch=d-token-bucket-wait-rounded-down ;;
  *) echo "usage: $0 <a|b|c|d>" >&2; exit 2 ;;
esac
if ! git diff --quiet -- src/limiter; then
  echo "src/limiter has uncommitted changes: commit or stash them first (revert uses git checkout)" >&2
  exit 2
fi
if ! git apply "scripts/bugs/$patch.patch"; then
  echo "scripts/bugs/$patch.patch no longer applies: src/limiter changed; regenerate it" >&2
  exit 1
fi
echo "injected bug $1 ($patch); revert with: git checkout -- src/limiter"
