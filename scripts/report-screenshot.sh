#!/usr/bin/env bash
# Takes a screenshot of a drill report with headless Chromium (Debian's
# `chromium`, or $CHROMIUM), as the report's browser test does.
#
#   scripts/report-screenshot.sh data/reports/RUN.html docs/report.png
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 REPORT.html SCREENSHOT.png" >&2
  exit 2
fi
html=$(realpath "$1")
png=$(realpath -m "$2")
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "headless Chromium is needed at $chromium (or set \$CHROMIUM): apt-get install -y chromium" >&2
  exit 1
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size="${WINDOW_SIZE:-1280,2000}" \
  --screenshot="$png" "file://$html" 2>/dev/null
[ -s "$png" ] || { echo "chromium wrote no screenshot to $png" >&2; exit 1; }
echo "$png"
