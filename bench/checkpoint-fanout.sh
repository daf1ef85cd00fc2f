#!/usr/bin/env bash
# Fans out two checkpoints to 3 target regions against one fake-gcs-server,
# side by side with what a user would otherwise script:
#   - Lifeboat: the release checkpoint-fanout service, sent the marker's
#     finalize event as Eventarc sends it (timed until its 200, which comes
#     only once every region holds every shard verified and the marker);
#   - gcloud storage cp 'gs://SRC/dir/*' gs://DST/dir/ (3 regions in parallel);
#   - rclone copy :gcs:SRC/dir :gcs:DST/dir --transfers 64 --checkers 64
#     (3 regions in parallel);
#   - the floor: the same rewrites sent by `curl --parallel` (64 in flight),
#     with no listing, verification or marker: what the emulator itself allows.
# Checkpoints: 1 GiB in 16 shards of 64 MiB, and 2,000 shards of 16 KiB.
# Every tool runs ROUNDS times (default 3) in rotating order after one
# untimed warm-up copy (fake-gcs-server's first large copies are up to twice
# as slow while its heap grows); the table gives each tool's median. Each
# run's copies are checked (every object in every region) and deleted before
# the next run.
# Prints a Markdown table (median times, ratios, the function's peak RSS).
#
#   bench/checkpoint-fanout.sh          # installs rclone and bc if missing
#   BENCH_GCS_BACKEND=filesystem bench/checkpoint-fanout.sh   # fake-gcs-server on disk
#   ROUNDS=5 bench/checkpoint-fanout.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/emulators.sh
source scripts/debian-packages.sh
needs_debian_package rclone
needs_debian_package bc

emulators_install
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -q -p lifeboat-checkpoint-fanout
SERVICE="$TARGET/release/checkpoint-fanout"

mkdir -p "$EMULATORS_ROOT"
WORK=$(mktemp -d "$EMULATORS_ROOT/bench.XXXXXX")
EMULATORS_RUN="$WORK"
trap '{ emulators_stop; rm -rf "$WORK"; } || true' EXIT
mkdir -p "$WORK/logs"

GCS_PORT=$(emulators_free_port); FS_PORT=$(emulators_free_port)
GCS_BIN=$(emulators_fake_gcs_binary); chmod +x "$GCS_BIN"
case "${BENCH_GCS_BACKEND:-memory}" in
  memory) BACKEND=(-backend memory) ;;
  filesystem) BACKEND=(-backend filesystem -filesystem-root "$WORK/gcs") ;;
  *) echo "BENCH_GCS_BACKEND must be memory or filesystem" >&2; exit 2 ;;
esac
emulators_spawn "$WORK/logs/gcs.log" "$GCS_BIN" -scheme http -host 127.0.0.1 -port "$GCS_PORT" \
  "${BACKEND[@]}" -log-level error
emulators_spawn "$WORK/logs/firestore.log" \
  gcloud emulators firestore start --host-port="127.0.0.1:$FS_PORT" --quiet
emulators_wait_port fake-gcs-server "$GCS_PORT" "$WORK/logs/gcs.log"
emulators_wait_port Firestore "$FS_PORT" "$WORK/logs/firestore.log"
GCS="http://127.0.0.1:$GCS_PORT"
PROJECT=lifeboat-bench
REGIONS=(us-east1 europe-west1 asia-northeast1)

bucket() { curl -sf -X POST "$GCS/storage/v1/b?project=$PROJECT" -H 'content-type: application/json' \
  -d "{\"name\": \"$1\", \"location\": \"$2\"}" >/dev/null; }
bucket src us-central1
for tool in lifeboat gcloud rclone floor; do
  for region in "${REGIONS[@]}"; do bucket "$tool-$region" "$region"; done
done

# The two checkpoints, uploaded once (not timed).
make_checkpoint() { # dir shards bytes_per_shard
  mkdir -p "$1"
  for ((i = 0; i < $2; i++)); do head -c "$3" /dev/urandom >"$1/shard-$(printf %05d "$i")"; done
  echo ok >"$1/commit_success.txt"
}
make_checkpoint "$WORK/local/ckpt/step_100" 16 $((64 << 20))
make_checkpoint "$WORK/local/ckpt/step_200" 2000 $((16 << 10))
RCLONE=(rclone --gcs-endpoint "$GCS/storage/v1/" --gcs-anonymous --transfers 64 --checkers 64)
"${RCLONE[@]}" copy "$WORK/local/ckpt" :gcs:src/ckpt
rm -rf "$WORK/local"

cat >"$WORK/topology.yaml" <<YAML
project: $PROJECT
regions:
  - {id: us-central1, role: primary}
  - {id: us-east1, role: standby}
  - {id: europe-west1, role: standby}
  - {id: asia-northeast1, role: standby}
workloads:
  - id: bench
    class: production-training
    pattern: active-passive
    assets:
      checkpoints:
        - id: bench-ckpt
          bucket: src
          prefix: ckpt/
          marker: orbax
          replicas:
            us-east1: lifeboat-us-east1
            europe-west1: lifeboat-europe-west1
            asia-northeast1: lifeboat-asia-northeast1
          interval-steps: 100
          keep-newest: 5
YAML

export CLOUDSDK_CONFIG="$WORK/gcloud"
gcloud config set api_endpoint_overrides/storage "$GCS/" --quiet 2>/dev/null
gcloud config set auth/disable_credentials true --quiet 2>/dev/null
gcloud config set project "$PROJECT" --quiet 2>/dev/null

now() { date +%s.%N; }
count() { curl -sf "$GCS/storage/v1/b/$1/o?prefix=$2&maxResults=5000" | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("items", [])))'; }
# Checks that every region got every object, then deletes them (not timed)
# so the in-memory server holds one run's copies at a time.
check() { # tool dir expected
  for region in "${REGIONS[@]}"; do
    local n; n=$(count "$1-$region" "$2")
    [ "$n" = "$3" ] || { echo "$1 left $n of $3 objects in $1-$region/$2" >&2; exit 1; }
    "${RCLONE[@]}" delete ":gcs:$1-$region/$2" 2>>"$WORK/logs/cleanup.log"
  done
}

# Lifeboat: the service, one per scenario so its peak RSS is the scenario's.
lifeboat_run() { # dir -> "seconds peak_kib"
  local port pid marker event started status
  port=$(emulators_free_port)
  PORT=$port STORAGE_EMULATOR_HOST="$GCS" FIRESTORE_EMULATOR_HOST="127.0.0.1:$FS_PORT" \
    LIFEBOAT_TOPOLOGY="$WORK/topology.yaml" LIFEBOAT_METRICS=state RUST_LOG=warn "$SERVICE" >>"$WORK/logs/service.log" 2>&1 &
  pid=$!
  emulators_wait_port checkpoint-fanout "$port" "$WORK/logs/service.log"
  marker=$(curl -sf "$GCS/storage/v1/b/src/o/$(python3 -c 'import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1commit_success.txt")")
  started=$(now)
  status=$(curl -s -o "$WORK/response.json" -w '%{http_code}' -X POST "http://127.0.0.1:$port/" \
    -H 'content-type: application/json' -H 'ce-specversion: 1.0' -H "ce-id: bench-$1-$RANDOM$RANDOM" \
    -H 'ce-type: google.cloud.storage.object.v1.finalized' \
    -H 'ce-source: //storage.googleapis.com/projects/_/buckets/src' \
    -H "ce-time: $(date -u +%Y-%m-%dT%H:%M:%SZ)" -d "$marker")
  local seconds; seconds=$(echo "$(now) - $started" | bc)
  [ "$status" = 200 ] || { echo "checkpoint-fanout answered $status: $(cat "$WORK/response.json")" >&2; exit 1; }
  local peak; peak=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  echo "$seconds $peak"
}

gcloud_run() { # dir
  local started; started=$(now)
  for region in "${REGIONS[@]}"; do
    gcloud storage cp "gs://src/$1*" "gs://gcloud-$region/$1" --quiet >>"$WORK/logs/gcloud.log" 2>&1 &
  done
  wait
  echo "$(now) - $started" | bc
}

rclone_run() { # dir
  local started; started=$(now)
  for region in "${REGIONS[@]}"; do
    "${RCLONE[@]}" copy ":gcs:src/$1" ":gcs:rclone-$region/$1" >>"$WORK/logs/rclone.log" 2>&1 &
  done
  wait
  echo "$(now) - $started" | bc
}

floor_run() { # dir shard_count -> seconds (rewrites of every object listed under dir)
  local names; names=$(curl -sf "$GCS/storage/v1/b/src/o?prefix=$1&maxResults=5000" |
    python3 -c 'import json,sys,urllib.parse; [print(urllib.parse.quote(o["name"], safe="")) for o in json.load(sys.stdin)["items"]]')
  for region in "${REGIONS[@]}"; do
    for name in $names; do
      printf 'url = "%s"\nrequest = POST\noutput = "/dev/null"\n' \
        "$GCS/storage/v1/b/src/o/$name/rewriteTo/b/floor-$region/o/$name"
    done
  done >"$WORK/floor.cfg"
  local started; started=$(now)
  curl -sf --parallel --parallel-max 64 -K "$WORK/floor.cfg"
  echo "$(now) - $started" | bc
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

ROUNDS=${ROUNDS:-3}
TOOLS=(lifeboat gcloud rclone floor)
echo "| checkpoint | Lifeboat | gcloud storage cp | rclone copy | floor (curl rewrites) | gcloud / Lifeboat | rclone / Lifeboat | Lifeboat / floor | Lifeboat peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|"
for scenario in "1 GiB in 16 shards:ckpt/step_100/:17" "2,000 shards of 16 KiB:ckpt/step_200/:2001"; do
  IFS=: read -r label dir objects <<<"$scenario"
  floor_run "$dir" >/dev/null; check floor "$dir" "$objects"   # warm-up, not timed
  declare -A times=([lifeboat]="" [gcloud]="" [rclone]="" [floor]="")
  peak=0
  for ((round = 0; round < ROUNDS; round++)); do
    for ((i = 0; i < ${#TOOLS[@]}; i++)); do
      tool=${TOOLS[$(((i + round) % ${#TOOLS[@]}))]}
      case $tool in
        lifeboat) read -r seconds kib < <(lifeboat_run "$dir"); ((kib > peak)) && peak=$kib ;;
        *) seconds=$("${tool}_run" "$dir") ;;
      esac
      check "$tool" "$dir" "$objects"
      times[$tool]+=" $seconds"
      echo "$label, round $((round + 1)): $tool $seconds s" >&2
    done
  done
  lifeboat=$(median ${times[lifeboat]}); gcloud=$(median ${times[gcloud]})
  rclone=$(median ${times[rclone]}); floor=$(median ${times[floor]})
  printf '| %s | %.2f s | %.2f s | %.2f s | %.2f s | %.1f× | %.1f× | %.2f× | %d MiB |\n' "$label" \
    "$lifeboat" "$gcloud" "$rclone" "$floor" "$(echo "$gcloud / $lifeboat" | bc -l)" \
    "$(echo "$rclone / $lifeboat" | bc -l)" "$(echo "$lifeboat / $floor" | bc -l)" $((peak / 1024))
done
