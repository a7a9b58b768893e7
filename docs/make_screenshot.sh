#!/usr/bin/env bash
# The HTML report's screenshot: score sample_data/ by region with --html, then photograph the page
# in headless Chromium. Usage: docs/make_screenshot.sh [OUT.png] (default out/report.png, ignored by
# git). Needs gaussnll installed with matplotlib ([html] or [test]). Without Chromium or Chrome on
# PATH it says so and exits 0, so CI stays green on a machine without a browser.
set -euo pipefail
cd "$(dirname "$0")/.."
shot="$(realpath -m "${1:-out/report.png}")"

browser=""
for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then
        browser="$name"
        break
    fi
done
if [ -z "$browser" ]; then
    echo "make_screenshot: no Chromium or Chrome on PATH; no screenshot made" >&2
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
gaussnll score sample_data/preds.parquet --by region --html "$work/report.html" -q >/dev/null
mkdir -p "$(dirname "$shot")"
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$work/profile" \
    --window-size=1200,2400 --screenshot="$shot" "file://$work/report.html" >/dev/null 2>&1
[ -s "$shot" ] || { echo "make_screenshot: $browser wrote no screenshot" >&2; exit 1; }
echo "make_screenshot: wrote $shot" >&2
