#!/usr/bin/env bash
# Renders a report's index.html in headless Chromium at 1400 px wide and writes a PNG, to
# check by eye that the page (verdict lines, summary table, charts) fits a 1400-px-wide
# window. Not part of CI. Installs nothing: it uses `chromium` (or `chromium-browser`,
# `google-chrome`) when present and says how to get it otherwise.
# Usage: scripts/screenshot.sh [REPORT_DIR] [OUT.png]
#   REPORT_DIR defaults to reports/quickstart (write it first with
#   `cargo run --release -- run scenarios/quickstart.toml`); OUT defaults to
#   REPORT_DIR/screenshot.png. HEIGHT (px, default 2000) is the window's height: the PNG
#   shows the page's first HEIGHT pixels. Exit 2 when Chromium or the report is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
report=${1:-reports/quickstart}
page="$report/index.html"
out=${2:-$report/screenshot.png}
height=${HEIGHT:-2000}
if [ ! -f "$page" ]; then
  echo "no $page: run \`cargo run --release -- run scenarios/quickstart.toml\` first" >&2
  exit 2
fi
chrome=""
for c in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$c" >/dev/null 2>&1; then
    chrome=$c
    break
  fi
done
if [ -z "$chrome" ]; then
  echo "no Chromium found: install it (e.g. \`apt-get install -y chromium\`) and rerun" >&2
  exit 2
fi
flags=(--headless --disable-gpu --hide-scrollbars --no-first-run
  --window-size="1400,$height" --screenshot="$(realpath -m "$out")")
# Chromium refuses to run as root without --no-sandbox (containers, CI images).
if [ "$(id -u)" -eq 0 ]; then
  flags+=(--no-sandbox)
fi
"$chrome" "${flags[@]}" "file://$(realpath "$page")" >/dev/null 2>&1
if [ ! -s "$out" ]; then
  echo "$chrome wrote no screenshot at $out" >&2
  exit 1
fi
echo "$out (1400 x $height px)"
