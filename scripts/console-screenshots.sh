#!/usr/bin/env bash
# Remakes the console's screenshots in docs/images/ from a real local cloud:
# console-healthy.png (the production example with a checkpoint fanned out
# and the model in parity) and console-failover.png (us-central1 failed,
# detected and failed over, the incident open) and console-failback.png
# (healed and failed back, the routing chart showing the round trip).
# Needs headless Chromium
# (Debian's `chromium`, or $CHROMIUM).
#
#   scripts/console-screenshots.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "headless Chromium is needed at $chromium (or set \$CHROMIUM): apt-get install -y chromium" >&2
  exit 1
fi
cargo build --locked -q -p lifeboat-cli
lifeboat=target/debug/lifeboat
topology=examples/production-three-region.yaml
data=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$data"
}
trap cleanup EXIT
run() { "$lifeboat" "$@" --topology "$topology" --data-dir "$data" >/dev/null; }

LIFEBOAT_LOG_FORMAT=json "$lifeboat" local up --port 0 --topology "$topology" --data-dir "$data" >"$data/up.log" 2>&1 &
pid=$!
for _ in $(seq 120); do grep -q '^ready' "$data/up.log" && break; sleep 0.5; done
grep -q '^ready' "$data/up.log" || { cat "$data/up.log" >&2; exit 1; }
console=$(sed -n 's/^  console *//p' "$data/up.log")

# Waits (up to 60 s) until the status JSON holds the text $1.
wait_for() {
  for _ in $(seq 120); do
    "$lifeboat" status --json --topology "$topology" --data-dir "$data" 2>/dev/null | grep -q "$1" && return 0
    sleep 0.5
  done
  echo "the local cloud never showed $1" >&2
  exit 1
}

shoot() {
  local profile
  profile=$(mktemp -d)
  "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars --window-size="1280,$2" \
    --screenshot="docs/images/$1" "$console" 2>/dev/null
  rm -rf "$profile"
  [ -s "docs/images/$1" ] || { echo "chromium wrote no docs/images/$1" >&2; exit 1; }
  echo "docs/images/$1"
}

run local write-checkpoint --step 100 --shards 8 --size 8000000
wait_for '"newest_step": 100'
sleep 5
run local write-checkpoint --step 200 --shards 8 --size 8000000
wait_for '"newest_step": 200'
shoot console-healthy.png 2300

run local fail-region us-central1 --mode stop
wait_for '"us-east1": 100'
sleep 3
shoot console-failover.png 2700

run local heal-region us-central1
wait_for '"open_incidents": \[\]'
run failback recommendations
wait_for '"us-central1": 100'
sleep 3
shoot console-failback.png 2700
