#!/usr/bin/env bash
# data-sync against rclone sync and gcloud storage rsync on fake-gcs-server:
# one source bucket of SMALL small objects and LARGE large ones, synced to 2
# empty replica buckets by each tool in turn:
#   - Lifeboat, event path: one finalize CloudEvent per object POSTed to the
#     data-sync router (Firestore emulator for its ledger);
#   - Lifeboat, reconcile: the scheduled reconcile;
#   - rclone sync and gcloud storage rsync, both replicas at once.
# Every tool gets a fresh fake-gcs-server loaded with the same objects
# (`-data`), since the server slows down as it fills. Prints wall time, CPU
# time and peak memory (max RSS) of each tool, and the CPU time the server
# spent. BACKEND picks the server's storage: `filesystem` (the default)
# keeps a file per object, so a call costs the same at any bucket size, as
# on Cloud Storage, in GCS_ROOT (default /dev/shm: on disk, runs were slowed
# unevenly by the write-back of earlier runs' files); `memory` finds an
# object by scanning its bucket, so every call costs in proportion to the
# bucket and the server's CPU bounds every tool.
#
#   bench/data-sync.sh                       # 10,000 x 1 KiB + 8 x 128 MiB
#   SMALL=1000 LARGE=2 bench/data-sync.sh    # a quicker run
#   TOOLS="events rclone" bench/data-sync.sh # some of the tools only
#   ROUNDS=3 bench/data-sync.sh              # 3 rounds, tool order rotated
#   BACKEND=memory bench/data-sync.sh        # fake-gcs-server in memory
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SMALL=${SMALL:-10000}
SMALL_BYTES=${SMALL_BYTES:-1024}
LARGE=${LARGE:-8}
LARGE_BYTES=${LARGE_BYTES:-134217728}
CONCURRENCY=${CONCURRENCY:-64}
TOOLS=${TOOLS:-"events reconcile rclone gcloud"}   # which of them to run
GCLOUD_TIMEOUT=${GCLOUD_TIMEOUT:-1800}             # seconds gcloud may take
ROUNDS=${ROUNDS:-1}                                # each round in another order
BACKEND=${BACKEND:-filesystem}                     # fake-gcs-server's: filesystem or memory
GCS_ROOT=${GCS_ROOT:-/dev/shm}                     # where the filesystem backend keeps its files

source scripts/emulators.sh
source scripts/debian-packages.sh
case " $TOOLS " in *" rclone "*) needs_debian_package rclone ;; esac
WORK=$(mktemp -d)
# In memory (tmpfs) by default: on disk, the write-back of one tool's files
# slowed the next tool's run unevenly.
ROOT=$(mktemp -d -p "$GCS_ROOT")
GCS_PGID=""
stop_gcs() {
  if [ -n "$GCS_PGID" ]; then
    kill -TERM -- "-$GCS_PGID" 2>/dev/null || true
    wait "$GCS_PGID" 2>/dev/null || true
    GCS_PGID=""
  fi
}
trap 'stop_gcs; emulators_stop; rm -rf "$WORK" "$ROOT"' EXIT
trap 'exit 130' INT TERM

echo "== building the benchmark driver (release)"
cargo build --release --quiet -p lifeboat-data-sync --example sync_bench
BENCH="${CARGO_TARGET_DIR:-target}/release/examples/sync_bench"

echo "== starting the emulators"
emulators_start
GCS_BIN=$(emulators_fake_gcs_binary)

echo "== writing gs://bench-src: $SMALL x $SMALL_BYTES B and $LARGE x $LARGE_BYTES B"
mkdir -p "$WORK/data/rep-use1" "$WORK/data/rep-euw1"
"$BENCH" seed "$WORK/data/bench-src" "$SMALL" "$SMALL_BYTES" "$LARGE" "$LARGE_BYTES"
expected=$((SMALL + LARGE))

# Starts a fresh fake-gcs-server holding the seeded buckets; sets GCS.
start_gcs() {
  local port
  port=$(emulators_free_port)
  rm -rf "${ROOT:?}"/*
  setsid "$GCS_BIN" -scheme http -host 127.0.0.1 -port "$port" -backend "$BACKEND" \
    -filesystem-root "$ROOT" -data "$WORK/data" -public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port" \
    >"$WORK/gcs.log" 2>&1 </dev/null &
  GCS_PGID=$!
  GCS="http://127.0.0.1:$port"
  until curl -sf "$GCS/storage/v1/b/rep-euw1" >/dev/null; do
    kill -0 "$GCS_PGID" 2>/dev/null || { cat "$WORK/gcs.log" >&2; return 1; }
    sleep 0.5
  done
}
gcs_cpu_seconds() { # user + system CPU of the running server
  awk '{printf "%.0f", ($14 + $15) / 100}' "/proc/$GCS_PGID/stat"
}
count_objects() {
  local bucket=$1 token="" count=0 page
  while :; do
    page=$(curl -sf "$GCS/storage/v1/b/$bucket/o?maxResults=1000&fields=items(name),nextPageToken${token:+&pageToken=$token}")
    count=$((count + $(jq '.items // [] | length' <<<"$page")))
    token=$(jq -r '.nextPageToken // empty | @uri' <<<"$page")
    [ -n "$token" ] || break
  done
  echo "$count"
}
topology() { # FILE
  cat >"$1" <<YAML
project: lifeboat-bench
regions:
  - id: us-central1
    role: primary
  - id: us-east1
    role: standby
  - id: europe-west1
    role: pilot-light
workloads:
  - id: bench
    class: research-training
    pattern: pilot-light
    assets:
      buckets:
        - id: corpus
          source: bench-src
          replicas:
            us-east1: rep-use1
            europe-west1: rep-euw1
YAML
}
measure() { # LABEL SHELL-COMMAND (run by bash, with $GCS the fresh server)
  local label=$1
  start_gcs
  export GCS
  local cpu_before; cpu_before=$(gcs_cpu_seconds)
  local status=0
  /usr/bin/time -f "%e %M %U %S" -o "$WORK/time" bash -c "$2" >"$WORK/out" 2>"$WORK/err" || status=$?
  if [ "$status" = 124 ]; then
    printf '%-32s gave up after %d s (timeout)\n' "$label" "$GCLOUD_TIMEOUT"
    stop_gcs
    return 0
  elif [ "$status" != 0 ]; then
    cat "$WORK/out" "$WORK/err" >&2; return 1
  fi
  local cpu=$(( $(gcs_cpu_seconds) - cpu_before ))
  read -r seconds rss user system <"$WORK/time"
  local counts; counts="$(count_objects rep-use1) $(count_objects rep-euw1)"
  stop_gcs
  printf '%-32s %9.2f s %6d MiB peak RSS  CPU %6.1f s  server CPU %5d s  replicas hold %s (of %d)\n' \
    "$label" "$seconds" $((rss / 1024)) "$(awk -v u="$user" -v s="$system" 'BEGIN { print u + s }')" "$cpu" "$counts" "$expected"
}

topology "$WORK/topology.yaml"
export CLOUDSDK_CONFIG="$WORK/gcloud"
gcloud config set auth/disable_credentials true --quiet >/dev/null 2>&1
gcloud config set project lifeboat-bench --quiet >/dev/null 2>&1

echo "== syncing $expected objects to 2 replica buckets ($(nproc) cores, fake-gcs-server backend $BACKEND)"
lifeboat() { STORAGE_EMULATOR_HOST=$GCS "$BENCH" "$@"; }
rclone_both() {
  local flags=(--gcs-endpoint "$GCS/storage/v1/" --gcs-anonymous --transfers "$CONCURRENCY" --checkers "$CONCURRENCY")
  rclone "${flags[@]}" sync :gcs:bench-src :gcs:rep-use1 &
  rclone "${flags[@]}" sync :gcs:bench-src :gcs:rep-euw1 &
  wait -n && wait -n
}
gcloud_both() {
  gcloud config set api_endpoint_overrides/storage "$GCS/" --quiet >/dev/null 2>&1
  rm -rf "$CLOUDSDK_CONFIG"-rep-*
  # One configuration folder each: two rsyncs sharing one collide on
  # their temporary listing files.
  for replica in rep-use1 rep-euw1; do
    cp -r "$CLOUDSDK_CONFIG" "$CLOUDSDK_CONFIG-$replica"
    CLOUDSDK_CONFIG="$CLOUDSDK_CONFIG-$replica" timeout "$GCLOUD_TIMEOUT" \
      gcloud storage rsync -r gs://bench-src "gs://$replica" --quiet &
  done
  wait -n && wait -n
}
export BENCH CONCURRENCY GCLOUD_TIMEOUT
export -f lifeboat rclone_both gcloud_both
read -ra tools <<<"$TOOLS"
for ((round = 0; round < ROUNDS; round++)); do
  [ "$ROUNDS" = 1 ] || echo "-- round $((round + 1)) of $ROUNDS"
  for ((i = 0; i < ${#tools[@]}; i++)); do
  tool=${tools[(i + round) % ${#tools[@]}]}
  case $tool in
    events) measure "lifeboat data-sync, event path" "lifeboat events $WORK/topology.yaml $CONCURRENCY" ;;
    reconcile) measure "lifeboat data-sync, reconcile" "lifeboat reconcile $WORK/topology.yaml $CONCURRENCY" ;;
    rclone) measure "rclone sync" rclone_both ;;
    gcloud) measure "gcloud storage rsync" gcloud_both ;;
    *) echo "unknown tool $tool (events, reconcile, rclone, gcloud)" >&2; exit 2 ;;
  esac
  done
done
