#!/usr/bin/env bash
# Fans out two checkpoints to 3 target regions against one fake-gcs-server,
# side by side with what a user would otherwise script:
#   - Lifeboat: the release checkpoint-fanout service, sent the marker's
#     finalize event as Eventarc sends it (timed until its 200, which comes
#     only once every region holds every shard verified and the marker);
#   - gcloud storage cp 'gs://SRC/dir/*' gs://DST/dir/ (3 regions in parallel);
#   - rclone copy :gcs:SRC/dir :gcs:DST/dir --transfers 64 --checkers 64
#     (3 regions in parallel);
#   - the floor: the same rewrites, bare, 64 in flight, following rewrite
#     tokens (`shaper rewrite-all`), with no listing, verification or marker.
# Each runs twice: straight to fake-gcs-server, where a call costs almost
# nothing, and through the shaping proxy (bench/shaper), where every call
# waits DELAY_MS (default 25, a Cloud Storage call within a continent) and a
# rewrite copies at REWRITE_MIB_PER_SECOND per object (default 100), over
# several calls with a rewrite token when it takes longer than a second, as
# across regions on Cloud Storage. The proxy counts the calls each tool made
# per object copied.
# Checkpoints: 1 GiB in 16 shards of 64 MiB, and 2,000 shards of 16 KiB;
# with LLM=1 also 10,000 shards of 4 KiB, and 100 GiB in 1,600 shards of
# 64 MiB, through the proxy only: each shard holds 1 KiB and tells the proxy
# (custom metadata `shaper-size`) to rewrite it in the time 64 MiB takes,
# so the calls and their timing are those of 100 GiB while the emulator
# copies 1.6 MiB. For Lifeboat, every run checks the marker was written in
# each region after every shard.
# Every tool runs ROUNDS times (default 3) in rotating order after one
# untimed warm-up copy (fake-gcs-server's first large copies are up to twice
# as slow while its heap grows); the table gives each tool's median. Each
# run's copies are checked (every object in every region) and deleted before
# the next run.
# Prints a Markdown table (median times, ratios, the function's peak RSS).
#
#   bench/checkpoint-fanout.sh          # installs rclone and bc if missing
#   BENCH_GCS_BACKEND=filesystem bench/checkpoint-fanout.sh   # fake-gcs-server on disk
#   BENCH_GCS_BACKEND=filesystem BENCH_GCS_ROOT=/dev/shm/gcs ...   # its files in memory
#     (the memory backend finds an object by walking its bucket: checking
#     and deleting 10,000 shards in 3 regions takes minutes there)
#   ROUNDS=5 bench/checkpoint-fanout.sh
#   MODES=shaped bench/checkpoint-fanout.sh   # only through the proxy (or: direct)
#   LLM=1 ONLY='100 GiB' bench/checkpoint-fanout.sh   # the checkpoints whose label matches
#   TOOLS=lifeboat SERVICE_LOG_LEVEL=info SERVICE_LOG=/tmp/service.log ...   # one tool, its log kept
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/emulators.sh
source scripts/debian-packages.sh
needs_debian_package rclone
needs_debian_package bc

emulators_install
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -q -p lifeboat-checkpoint-fanout -p lifeboat-shaper
SERVICE="$TARGET/release/checkpoint-fanout"
SHAPER="$TARGET/release/shaper"

mkdir -p "$EMULATORS_ROOT"
WORK=$(mktemp -d "$EMULATORS_ROOT/bench.XXXXXX")
EMULATORS_RUN="$WORK"
trap '{ emulators_stop; [ -z "${SERVICE_LOG:-}" ] || cp "$WORK/logs/service.log" "$SERVICE_LOG"
  rm -rf "$WORK" "${BENCH_GCS_ROOT:-}"; } || true' EXIT
mkdir -p "$WORK/logs"

GCS_PORT=$(emulators_free_port); FS_PORT=$(emulators_free_port)
GCS_BIN=$(emulators_fake_gcs_binary); chmod +x "$GCS_BIN"
case "${BENCH_GCS_BACKEND:-memory}" in
  memory) BACKEND=(-backend memory) ;;
  filesystem) BACKEND=(-backend filesystem -filesystem-root "${BENCH_GCS_ROOT:-$WORK/gcs}") ;;
  *) echo "BENCH_GCS_BACKEND must be memory or filesystem" >&2; exit 2 ;;
esac
emulators_spawn "$WORK/logs/gcs.log" "$GCS_BIN" -scheme http -host 127.0.0.1 -port "$GCS_PORT" \
  "${BACKEND[@]}" -log-level error
emulators_spawn "$WORK/logs/firestore.log" \
  gcloud emulators firestore start --host-port="127.0.0.1:$FS_PORT" --quiet
emulators_wait_port fake-gcs-server "$GCS_PORT" "$WORK/logs/gcs.log"
emulators_wait_port Firestore "$FS_PORT" "$WORK/logs/firestore.log"
GCS="http://127.0.0.1:$GCS_PORT"
SHAPER_PORT=$(emulators_free_port)
emulators_spawn "$WORK/logs/shaper.log" "$SHAPER" serve --upstream "$GCS" \
  --listen "127.0.0.1:$SHAPER_PORT" --delay-ms "${DELAY_MS:-25}" \
  --rewrite-mib-per-second "${REWRITE_MIB_PER_SECOND:-100}"
emulators_wait_port shaper "$SHAPER_PORT" "$WORK/logs/shaper.log"
SHAPED="http://127.0.0.1:$SHAPER_PORT"
ENDPOINT=$GCS   # where the timed tools send their calls: $GCS or $SHAPED
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
[ "${LLM:-0}" = 1 ] && make_checkpoint "$WORK/local/ckpt/step_300" 10000 $((4 << 10))
RCLONE=(rclone --gcs-endpoint "$GCS/storage/v1/" --gcs-anonymous --transfers 64 --checkers 64)
"${RCLONE[@]}" copy "$WORK/local/ckpt" :gcs:src/ckpt
rm -rf "$WORK/local"
if [ "${LLM:-0}" = 1 ]; then # 1,600 shards of 1 KiB standing for 64 MiB each, then the marker
  python3 - "$GCS" <<'PY'
import json, sys, urllib.request
gcs = sys.argv[1]
def upload(name, metadata, body):
    boundary = "shaper-bench"
    part = json.dumps({"name": name, "metadata": metadata}).encode()
    data = (f"--{boundary}\r\ncontent-type: application/json\r\n\r\n".encode() + part +
            f"\r\n--{boundary}\r\ncontent-type: application/octet-stream\r\n\r\n".encode() + body +
            f"\r\n--{boundary}--\r\n".encode())
    request = urllib.request.Request(f"{gcs}/upload/storage/v1/b/src/o?uploadType=multipart", data=data,
        headers={"content-type": f"multipart/related; boundary={boundary}"})
    urllib.request.urlopen(request).read()
for i in range(1600):
    upload(f"ckpt/step_400/shard-{i:05d}", {"shaper-size": str(64 << 20)}, bytes([i % 251]) * 1024)
upload("ckpt/step_400/commit_success.txt", {}, b"ok\n")
PY
fi

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
count() { curl -sf "$GCS/storage/v1/b/$1/o?prefix=$2&maxResults=20000" | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("items", [])))'; }
# Checks that every region got every object, then deletes them (not timed)
# so the in-memory server holds one run's copies at a time.
check() { # tool dir expected
  for region in "${REGIONS[@]}"; do
    local n; n=$(count "$1-$region" "$2")
    [ "$n" = "$3" ] || { echo "$1 left $n of $3 objects in $1-$region/$2" >&2; exit 1; }
    "${RCLONE[@]}" delete ":gcs:$1-$region/$2" 2>>"$WORK/logs/cleanup.log"
  done
}

# Fails unless, in every region, Lifeboat's marker was created after every
# shard of the checkpoint.
marker_last() { # dir
  for region in "${REGIONS[@]}"; do
    curl -sf "$GCS/storage/v1/b/lifeboat-$region/o?prefix=$1&maxResults=20000" | python3 -c '
import json, sys
def created(o):  # RFC 3339 with 0 to 9 fraction digits, UTC
    base, _, fraction = o["timeCreated"].rstrip("Z").partition(".")
    return (base, int((fraction + "000000000")[:9]))
items = json.load(sys.stdin)["items"]
marker = [o for o in items if o["name"].endswith("commit_success.txt")]
shards = [created(o) for o in items if not o["name"].endswith("commit_success.txt")]
if len(marker) != 1 or created(marker[0]) < max(shards):
    sys.exit(f"{sys.argv[1]}: the marker was not written last")' "lifeboat-$region/$1"
  done
}

# Lifeboat: the service, one per scenario so its peak RSS is the scenario's.
lifeboat_run() { # dir -> "seconds peak_kib"
  local port pid marker event started status
  port=$(emulators_free_port)
  PORT=$port STORAGE_EMULATOR_HOST="$ENDPOINT" FIRESTORE_EMULATOR_HOST="127.0.0.1:$FS_PORT" \
    LIFEBOAT_TOPOLOGY="$WORK/topology.yaml" LIFEBOAT_METRICS=state RUST_LOG="${SERVICE_LOG_LEVEL:-warn}" "$SERVICE" >>"$WORK/logs/service.log" 2>&1 &
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
    CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE="$ENDPOINT/" \
      gcloud storage cp "gs://src/$1*" "gs://gcloud-$region/$1" --quiet >>"$WORK/logs/gcloud.log" 2>&1 &
  done
  wait
  echo "$(now) - $started" | bc
}

rclone_run() { # dir
  local started; started=$(now)
  for region in "${REGIONS[@]}"; do
    "${RCLONE[@]}" --gcs-endpoint "$ENDPOINT/storage/v1/" copy ":gcs:src/$1" ":gcs:rclone-$region/$1" \
      >>"$WORK/logs/rclone.log" 2>&1 &
  done
  wait
  echo "$(now) - $started" | bc
}

floor_run() { # dir -> seconds (bare rewrites of every object listed under dir)
  curl -sf "$GCS/storage/v1/b/src/o?prefix=$1&maxResults=20000" |
    python3 -c 'import json,sys,urllib.parse
regions = sys.argv[1:]
for o in json.load(sys.stdin)["items"]:
    name = urllib.parse.quote(o["name"], safe="")
    for region in regions:
        print(f"/storage/v1/b/src/o/{name} /b/floor-{region}/o/{name}")' "${REGIONS[@]}" >"$WORK/floor.pairs"
  local started; started=$(now)
  # 64 in flight per region, as Lifeboat and rclone.
  "$SHAPER" rewrite-all --endpoint "$ENDPOINT" --pairs "$WORK/floor.pairs" --concurrency $((64 * ${#REGIONS[@]}))
  echo "$(now) - $started" | bc
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

ROUNDS=${ROUNDS:-3}
read -ra TOOLS <<<"${TOOLS:-lifeboat gcloud rclone floor}"
calls() { curl -sf "$SHAPED/__shaper/counts" | python3 -c 'import json,sys; print(json.load(sys.stdin)["calls"])'; }
SCENARIOS=("1 GiB in 16 shards:ckpt/step_100/:17" "2,000 shards of 16 KiB:ckpt/step_200/:2001")
[ "${LLM:-0}" = 1 ] && SCENARIOS+=("10,000 shards of 4 KiB:ckpt/step_300/:10001"
  "100 GiB in 1,600 shards of 64 MiB (sizes stood in for):ckpt/step_400/:1601")
echo "| checkpoint | each call | Lifeboat | gcloud storage cp | rclone copy | floor (bare rewrites) | gcloud / Lifeboat | rclone / Lifeboat | Lifeboat / floor | Lifeboat peak RSS | calls per object: Lifeboat | gcloud | rclone | floor |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for scenario in "${SCENARIOS[@]}"; do
  IFS=: read -r label dir objects <<<"$scenario"
  [[ -z "${ONLY:-}" || "$label" =~ $ONLY ]] || continue
  ENDPOINT=$GCS; floor_run "$dir" >/dev/null; check floor "$dir" "$objects"   # warm-up, not timed
  modes=${MODES:-direct shaped}
  [ "$dir" = ckpt/step_400/ ] && modes=shaped   # its sizes exist only through the proxy
  for mode in $modes; do
    ENDPOINT=$GCS
    [ "$mode" = shaped ] && ENDPOINT=$SHAPED
    declare -A times=([lifeboat]="" [gcloud]="" [rclone]="" [floor]="")
    declare -A per_object=([lifeboat]="" [gcloud]="" [rclone]="" [floor]="")
    peak=0
    for ((round = 0; round < ROUNDS; round++)); do
      for ((i = 0; i < ${#TOOLS[@]}; i++)); do
        tool=${TOOLS[$(((i + round) % ${#TOOLS[@]}))]}
        curl -sf -X DELETE "$SHAPED/__shaper/counts" >/dev/null
        case $tool in
          lifeboat) read -r seconds kib < <(lifeboat_run "$dir"); ((kib > peak)) && peak=$kib
            marker_last "$dir" ;;
          *) seconds=$("${tool}_run" "$dir") ;;
        esac
        if [ "$mode" = shaped ]; then
          per_object[$tool]+=" $(echo "scale=2; $(calls) / ($objects * ${#REGIONS[@]})" | bc)"
        fi
        check "$tool" "$dir" "$objects"
        times[$tool]+=" $seconds"
        echo "$label, $mode, round $((round + 1)): $tool $seconds s" >&2
      done
    done
    lifeboat=$(median ${times[lifeboat]}); gcloud=$(median ${times[gcloud]})
    rclone=$(median ${times[rclone]}); floor=$(median ${times[floor]})
    calls_of() { if [ "$mode" = shaped ] && [ -n "${per_object[$1]}" ]; then median ${per_object[$1]}; else echo "-"; fi; }
    seconds() { if [ -n "$1" ]; then printf '%.2f s' "$1"; else echo -; fi; }
    ratio() { if [ -n "$1" ] && [ -n "$2" ]; then printf "%.${3}f×" "$(echo "$1 / $2" | bc -l)"; else echo -; fi; }
    label_mode="direct to the emulator"
    [ "$mode" = shaped ] && label_mode="shaped: ${DELAY_MS:-25} ms a call, ${REWRITE_MIB_PER_SECOND:-100} MiB/s a rewrite"
    echo "| $label | $label_mode | $(seconds "$lifeboat") | $(seconds "$gcloud") | $(seconds "$rclone") | $(seconds "$floor") |" \
      "$(ratio "$gcloud" "$lifeboat" 1) | $(ratio "$rclone" "$lifeboat" 1) | $(ratio "$lifeboat" "$floor" 2) | $((peak / 1024)) MiB |" \
      "$(calls_of lifeboat) | $(calls_of gcloud) | $(calls_of rclone) | $(calls_of floor) |"
  done
done
