#!/usr/bin/env bash
# For each known bug of issue 17 (see inject-bug.sh): inject it, run the property tests and
# `hub verify` on a scenario, check that BOTH fail, and revert. Not part of CI
# (it rebuilds four times). Prints one verdict per bug; exits 1 if any bug escaped.
# Usage: scripts/prove-bugs.sh [a b c d]   (env: SCENARIO, default scenarios/openai-60rpm.toml,
#        CARGO_FLAGS, default "-j 1"; OUT, a directory for the logs, default target/prove-bugs)
set -uo pipefail
cd "$(dirname "$0")/.."
scenario=${SCENARIO:-scenarios/openai-60rpm.toml}
flags=${CARGO_FLAGS:--j 1}
out=${OUT:-target/prove-bugs}
mkdir -p "$out"
if ! git diff --quiet -- src/limiter; then
  echo "src/limiter has uncommitted changes: commit or stash them first" >&2
  exit 2
fi
# The property tests persist the shrunk failures of the injected bugs; keep the
# regression files as they were before the run.
saved=$(mktemp -d)
cp -r proptest-regressions "$saved/"
trap 'git checkout -- src/limiter; rm -rf proptest-regressions; cp -r "$saved/proptest-regressions" .; rm -rf "$saved"' EXIT
escaped=0
for bug in "${@:-a b c d}"; do
  for b in $bug; do
    git checkout -- src/limiter
    scripts/inject-bug.sh "$b" >/dev/null || { escaped=1; continue; }
    # shellcheck disable=SC2086
    cargo test $flags --no-fail-fast --test limiter_properties --test limiter_conformance >"$out/$b-tests.log" 2>&1
    tests=$?
    # shellcheck disable=SC2086
    cargo run -q $flags --bin hub -- verify "$scenario" >"$out/$b-verify.log" 2>&1
    verify=$?
    caught_tests=$([ $tests -ne 0 ] && echo caught || echo ESCAPED)
    caught_verify=$([ $verify -eq 3 ] && echo caught || echo "ESCAPED (exit $verify)")
    echo "bug $b: property tests $caught_tests; hub verify $scenario $caught_verify"
    grep -E "^(test .* FAILED|     Running)" "$out/$b-tests.log" | sed "s/^/    /"
    grep -E "FAILED" "$out/$b-verify.log" | cut -c1-160 | sed 's/^/    /'
    if [ $tests -eq 0 ] || [ $verify -ne 3 ]; then escaped=1; fi
  done
done
exit $escaped
