#!/usr/bin/env bash
# data-sync side by side with rclone sync and gcloud storage rsync on
# fake-gcs-server: a source bucket synced to 2 empty replica buckets by
#   - Lifeboat, event path: one finalize CloudEvent per object POSTed to the
#     data-sync router (Firestore emulator for its ledger);
#   - Lifeboat, reconcile: the scheduled reconcile;
#   - rclone sync (--transfers and --checkers CONCURRENCY) and gcloud
#     storage rsync -r, both replicas at once;
#   - the floor: the same rewrites, bare, CONCURRENCY in flight per replica,
#     following rewrite tokens (`shaper rewrite-all`), with no listing,
#     verification or record.
# Two buckets, each its own row: SMALL objects of SMALL_BYTES, and LARGE
# objects of LARGE_BYTES. Each tool runs twice per round: straight to
# fake-gcs-server, where a call costs almost nothing, and through the
# shaping proxy (bench/shaper), where every call waits DELAY_MS (default
# 25, a Cloud Storage call within a continent) and a rewrite copies at
# REWRITE_MIB_PER_SECOND per object (default 100), over several calls with
# a rewrite token past a second, as across regions on Cloud Storage. The
# proxy counts the calls each tool made per object and replica.
# Every run gets a fresh fake-gcs-server holding the source bucket (`-data`)
# and two empty replicas, since the server slows down as it fills; its
# filesystem backend keeps a file per object in GCS_ROOT (default
# /dev/shm), so a call costs the same at any bucket size, as on Cloud
# Storage. Each run's replicas are counted afterwards. ROUNDS rounds (default
# 3), tools in rotated order; the table gives medians, ratios, calls per
# object and Lifeboat's peak RSS (max over its runs, /usr/bin/time).
#
#   bench/data-sync.sh                            # 2,000 x 1 KiB and 8 x 128 MiB
#   SMALL=10000 bench/data-sync.sh                # the earlier small bucket
#   MODES=shaped TOOLS="events rclone" bench/data-sync.sh   # some of it
#   ONLY=small bench/data-sync.sh                 # one bucket: small or large
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SMALL=${SMALL:-2000}
SMALL_BYTES=${SMALL_BYTES:-1024}
LARGE=${LARGE:-8}
LARGE_BYTES=${LARGE_BYTES:-134217728}
CONCURRENCY=${CONCURRENCY:-64}
TOOLS=${TOOLS:-"events reconcile rclone gcloud floor"}
MODES=${MODES:-"direct shaped"}
ROUNDS=${ROUNDS:-3}
GCLOUD_TIMEOUT=${GCLOUD_TIMEOUT:-1800}             # seconds gcloud may take
GCS_ROOT=${GCS_ROOT:-/dev/shm}                     # where the server keeps its files
DELAY_MS=${DELAY_MS:-25}
REWRITE_MIB_PER_SECOND=${REWRITE_MIB_PER_SECOND:-100}

source scripts/emulators.sh
source scripts/debian-packages.sh
needs_debian_package rclone
needs_debian_package bc
WORK=$(mktemp -d)
ROOT=$(mktemp -d -p "$GCS_ROOT")
PGIDS=()
stop_servers() {
  for pgid in "${PGIDS[@]}"; do
    kill -TERM -- "-$pgid" 2>/dev/null || true
    wait "$pgid" 2>/dev/null || true
  done
  PGIDS=()
}
trap 'stop_servers; emulators_stop; rm -rf "$WORK" "$ROOT"' EXIT
trap 'exit 130' INT TERM

echo "== building the benchmark driver and the shaping proxy (release)" >&2
cargo build --release --locked --quiet -p lifeboat-data-sync --example sync_bench -p lifeboat-shaper
TARGET="${CARGO_TARGET_DIR:-target}"
BENCH="$TARGET/release/examples/sync_bench"
SHAPER="$TARGET/release/shaper"

echo "== starting the emulators" >&2
emulators_start >&2
GCS_BIN=$(emulators_fake_gcs_binary)

echo "== writing the source buckets: $SMALL x $SMALL_BYTES B, $LARGE x $LARGE_BYTES B" >&2
for bucket in small large; do mkdir -p "$WORK/$bucket/rep-use1" "$WORK/$bucket/rep-euw1"; done
"$BENCH" seed "$WORK/small/bench-src" "$SMALL" "$SMALL_BYTES" 0 0
"$BENCH" seed "$WORK/large/bench-src" 0 0 "$LARGE" "$LARGE_BYTES"

# Starts a fresh fake-gcs-server holding the bucket set DATA, and a shaping
# proxy in front of it; sets GCS (the server) and SHAPED (the proxy).
start_servers() { # DATA
  local port shaper_port
  port=$(emulators_free_port)
  rm -rf "${ROOT:?}"/*
  setsid "$GCS_BIN" -scheme http -host 127.0.0.1 -port "$port" -backend filesystem \
    -filesystem-root "$ROOT" -data "$1" -public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port" \
    -log-level error >"$WORK/gcs.log" 2>&1 </dev/null &
  PGIDS+=($!)
  GCS="http://127.0.0.1:$port"
  until curl -sf "$GCS/storage/v1/b/rep-euw1" >/dev/null; do
    kill -0 "${PGIDS[-1]}" 2>/dev/null || { cat "$WORK/gcs.log" >&2; return 1; }
    sleep 0.5
  done
  shaper_port=$(emulators_free_port)
  setsid "$SHAPER" serve --upstream "$GCS" --listen "127.0.0.1:$shaper_port" --delay-ms "$DELAY_MS" \
    --rewrite-mib-per-second "$REWRITE_MIB_PER_SECOND" >"$WORK/shaper.log" 2>&1 </dev/null &
  PGIDS+=($!)
  SHAPED="http://127.0.0.1:$shaper_port"
  emulators_wait_port shaper "$shaper_port" "$WORK/shaper.log"
}
count_objects() { # BUCKET
  local bucket=$1 token="" count=0 page
  while :; do
    page=$(curl -sf "$GCS/storage/v1/b/$bucket/o?maxResults=1000&fields=items(name),nextPageToken${token:+&pageToken=$token}")
    count=$((count + $(jq '.items // [] | length' <<<"$page")))
    token=$(jq -r '.nextPageToken // empty | @uri' <<<"$page")
    [ -n "$token" ] || break
  done
  echo "$count"
}
cat >"$WORK/topology.yaml" <<YAML
project: lifeboat-bench
regions:
  - {id: us-central1, role: primary}
  - {id: us-east1, role: standby}
  - {id: europe-west1, role: pilot-light}
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
export CLOUDSDK_CONFIG="$WORK/gcloud"
gcloud config set auth/disable_credentials true --quiet >/dev/null 2>&1
gcloud config set project lifeboat-bench --quiet >/dev/null 2>&1

# The tools, each run by bash with $ENDPOINT the server or the proxy.
lifeboat() { SOURCE_LISTING_HOST=$GCS STORAGE_EMULATOR_HOST=$ENDPOINT "$BENCH" "$@"; }
rclone_both() {
  local flags=(--gcs-endpoint "$ENDPOINT/storage/v1/" --gcs-anonymous --transfers "$CONCURRENCY" --checkers "$CONCURRENCY")
  rclone "${flags[@]}" sync :gcs:bench-src :gcs:rep-use1 & local first=$!
  rclone "${flags[@]}" sync :gcs:bench-src :gcs:rep-euw1 &
  wait "$first" && wait $!
}
gcloud_both() {
  gcloud config set api_endpoint_overrides/storage "$ENDPOINT/" --quiet >/dev/null 2>&1
  rm -rf "$CLOUDSDK_CONFIG"-rep-*
  # One configuration folder each: two rsyncs sharing one collide on
  # their temporary listing files.
  local pids=()
  for replica in rep-use1 rep-euw1; do
    cp -r "$CLOUDSDK_CONFIG" "$CLOUDSDK_CONFIG-$replica"
    CLOUDSDK_CONFIG="$CLOUDSDK_CONFIG-$replica" timeout "$GCLOUD_TIMEOUT" \
      gcloud storage rsync -r gs://bench-src "gs://$replica" --quiet &
    pids+=($!)
  done
  wait "${pids[0]}" && wait "${pids[1]}"
}
floor_both() { # the pairs were listed before the clock started
  "$SHAPER" rewrite-all --endpoint "$ENDPOINT" --pairs "$PAIRS" --concurrency $((2 * CONCURRENCY))
}
export BENCH CONCURRENCY GCLOUD_TIMEOUT SHAPER
export -f lifeboat rclone_both gcloud_both floor_both

# Runs one tool on a fresh server; appends its seconds, peak KiB and calls
# per object to TIMES, PEAKS and CALLS under its name.
declare -A TIMES PEAKS CALLS
run_tool() { # TOOL MODE DATA OBJECTS
  local tool=$1 mode=$2 objects=$4 command
  start_servers "$3"
  ENDPOINT=$GCS
  [ "$mode" = shaped ] && ENDPOINT=$SHAPED
  export GCS ENDPOINT
  case $tool in
    events) command="lifeboat events $WORK/topology.yaml $CONCURRENCY" ;;
    reconcile) command="lifeboat reconcile $WORK/topology.yaml $CONCURRENCY" ;;
    rclone) command=rclone_both ;;
    gcloud) command=gcloud_both ;;
    floor)
      PAIRS="$WORK/pairs"; export PAIRS
      curl -sf "$GCS/storage/v1/b/bench-src/o?maxResults=100000&fields=items(name)" |
        jq -r '.items[].name | @uri | "/storage/v1/b/bench-src/o/\(.) /b/rep-use1/o/\(.)\n/storage/v1/b/bench-src/o/\(.) /b/rep-euw1/o/\(.)"' \
        | sed '/^$/d' >"$PAIRS"
      command=floor_both ;;
    *) echo "unknown tool $tool (events, reconcile, rclone, gcloud, floor)" >&2; exit 2 ;;
  esac
  local status=0 started
  started=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$WORK/time" bash -c "$command" >"$WORK/out" 2>"$WORK/err" || status=$?
  local seconds; seconds=$(echo "$(date +%s.%N) - $started" | bc)
  if [ "$status" != 0 ]; then
    echo "$tool ($mode) failed with status $status:" >&2; cat "$WORK/out" "$WORK/err" >&2; exit 1
  fi
  local calls=0
  [ "$mode" = shaped ] && calls=$(curl -sf "$SHAPED/__shaper/counts" | jq .calls)
  local held; held="$(count_objects rep-use1) $(count_objects rep-euw1)"
  [ "$held" = "$objects $objects" ] || { echo "$tool ($mode) left the replicas holding $held of $objects" >&2; exit 1; }
  stop_servers
  TIMES[$tool]+=" $seconds"
  PEAKS[$tool]+=" $(tail -1 "$WORK/time")"
  CALLS[$tool]+=" $(echo "scale=2; $calls / ($objects * 2)" | bc)"
  echo "$label, $mode, round $((round + 1)): $tool $seconds s" >&2
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
max() { printf '%s\n' "$@" | sort -g | tail -1; }
ratio() { # A B -> A / B, or - if either was not run
  if [ -n "$1" ] && [ -n "$2" ]; then printf '%.2f×' "$(echo "$1 / $2" | bc -l)"; else echo -; fi
}
seconds() { if [ -n "$1" ]; then printf '%.2f s' "$1"; else echo -; fi; }

read -ra tools <<<"$TOOLS"
echo "| bucket | each call | event path | reconcile | rclone sync | gcloud storage rsync | floor (bare rewrites) | rclone / event path | gcloud / event path | rclone / reconcile | gcloud / reconcile | event path / floor | reconcile / floor | Lifeboat peak RSS | calls per object and replica: event path | reconcile | rclone | gcloud | floor |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for bucket in "small:$SMALL objects of $SMALL_BYTES B:$SMALL" "large:$LARGE objects of $LARGE_BYTES B:$LARGE"; do
  IFS=: read -r data label objects <<<"$bucket"
  [[ -z "${ONLY:-}" || "$data" =~ $ONLY ]] && [ "$objects" != 0 ] || continue
  for mode in $MODES; do
    TIMES=() PEAKS=() CALLS=()
    for ((round = 0; round < ROUNDS; round++)); do
      for ((i = 0; i < ${#tools[@]}; i++)); do
        run_tool "${tools[(i + round) % ${#tools[@]}]}" "$mode" "$WORK/$data" "$objects"
      done
    done
    declare -A m=() c=()
    for tool in events reconcile rclone gcloud floor; do
      m[$tool]=""; c[$tool]="-"
      [ -n "${TIMES[$tool]:-}" ] || continue
      m[$tool]=$(median ${TIMES[$tool]})
      [ "$mode" = shaped ] && c[$tool]=$(median ${CALLS[$tool]})
    done
    peak=$(max ${PEAKS[events]:-0} ${PEAKS[reconcile]:-0})
    each="direct to the emulator"
    [ "$mode" = shaped ] && each="shaped: $DELAY_MS ms a call, $REWRITE_MIB_PER_SECOND MiB/s a rewrite"
    echo "| $label | $each | $(seconds "${m[events]}") | $(seconds "${m[reconcile]}") | $(seconds "${m[rclone]}") |" \
      "$(seconds "${m[gcloud]}") | $(seconds "${m[floor]}") | $(ratio "${m[rclone]}" "${m[events]}") |" \
      "$(ratio "${m[gcloud]}" "${m[events]}") | $(ratio "${m[rclone]}" "${m[reconcile]}") |" \
      "$(ratio "${m[gcloud]}" "${m[reconcile]}") | $(ratio "${m[events]}" "${m[floor]}") |" \
      "$(ratio "${m[reconcile]}" "${m[floor]}") | $((peak / 1024)) MiB | ${c[events]} | ${c[reconcile]} | ${c[rclone]} | ${c[gcloud]} | ${c[floor]} |"
  done
done
