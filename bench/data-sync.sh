#!/usr/bin/env bash
# data-sync against rclone sync and gcloud storage rsync, side by side on one
# fake-gcs-server: one source bucket of SMALL small objects and LARGE large
# ones, synced to 2 empty replica buckets by each tool in turn:
#   - Lifeboat, event path: one finalize CloudEvent per object POSTed to the
#     data-sync router (Firestore emulator for its ledger and idempotency);
#   - Lifeboat, reconcile: the scheduled reconcile into 2 other empty buckets;
#   - rclone sync and gcloud storage rsync, both replicas at once.
# Prints wall time and peak memory (max RSS) of each.
#
#   bench/data-sync.sh                       # 10,000 x 1 KiB + 8 x 128 MiB
#   SMALL=1000 LARGE=2 bench/data-sync.sh    # a quicker run
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SMALL=${SMALL:-10000}
SMALL_BYTES=${SMALL_BYTES:-1024}
LARGE=${LARGE:-8}
LARGE_BYTES=${LARGE_BYTES:-134217728}
CONCURRENCY=${CONCURRENCY:-64}

source scripts/emulators.sh
WORK=$(mktemp -d)
trap 'emulators_stop; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

echo "== building the benchmark driver (release)"
cargo build --release --quiet -p lifeboat-data-sync --example sync_bench
BENCH="${CARGO_TARGET_DIR:-target}/release/examples/sync_bench"

echo "== starting the emulators"
emulators_start
GCS=$STORAGE_EMULATOR_HOST

create_bucket() {
  curl -sf -X POST "$GCS/storage/v1/b?project=lifeboat-bench" \
    -H 'content-type: application/json' -d "{\"name\":\"$1\",\"location\":\"$2\"}" >/dev/null
}
count_objects() {
  local bucket=$1 token="" count=0 page
  while :; do
    page=$(curl -sf "$GCS/storage/v1/b/$bucket/o?maxResults=1000&fields=items(name),nextPageToken${token:+&pageToken=$token}")
    count=$((count + $(jq '.items // [] | length' <<<"$page")))
    token=$(jq -r '.nextPageToken // empty' <<<"$page")
    [ -n "$token" ] || break
  done
  echo "$count"
}
topology() { # FILE REPLICA-EAST REPLICA-WEST
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
            us-east1: $2
            europe-west1: $3
YAML
}
measure() { # LABEL COMMAND...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || {
    cat "$WORK/out" "$WORK/err" >&2; return 1; }
  read -r seconds rss <"$WORK/time"
  printf '%-34s %9.2f s %9d MiB peak RSS\n' "$label" "$seconds" $((rss / 1024))
}

for bucket in lb-ev-use1 lb-rc-use1 rc-use1 gc-use1; do create_bucket "$bucket" us-east1; done
for bucket in lb-ev-euw1 lb-rc-euw1 rc-euw1 gc-euw1; do create_bucket "$bucket" europe-west1; done
echo "== seeding gs://bench-src: $SMALL x $SMALL_BYTES B and $LARGE x $LARGE_BYTES B"
"$BENCH" seed bench-src "$SMALL" "$SMALL_BYTES" "$LARGE" "$LARGE_BYTES"
expected=$((SMALL + LARGE))
topology "$WORK/events.yaml" lb-ev-use1 lb-ev-euw1
topology "$WORK/reconcile.yaml" lb-rc-use1 lb-rc-euw1

export CLOUDSDK_CONFIG="$WORK/gcloud"
gcloud config set api_endpoint_overrides/storage "$GCS/" --quiet >/dev/null 2>&1
gcloud config set auth/disable_credentials true --quiet >/dev/null 2>&1
gcloud config set project lifeboat-bench --quiet >/dev/null 2>&1

echo "== syncing $expected objects to 2 replica buckets ($(nproc) cores)"
measure "lifeboat data-sync, event path" "$BENCH" events "$WORK/events.yaml" "$CONCURRENCY"
measure "lifeboat data-sync, reconcile" "$BENCH" reconcile "$WORK/reconcile.yaml" "$CONCURRENCY"
measure "rclone sync" bash -c "
  rclone --gcs-endpoint $GCS/storage/v1/ --gcs-anonymous --transfers $CONCURRENCY --checkers $CONCURRENCY sync :gcs:bench-src :gcs:rc-use1 &
  rclone --gcs-endpoint $GCS/storage/v1/ --gcs-anonymous --transfers $CONCURRENCY --checkers $CONCURRENCY sync :gcs:bench-src :gcs:rc-euw1 &
  wait -n && wait -n"
measure "gcloud storage rsync" bash -c "
  gcloud storage rsync -r gs://bench-src gs://gc-use1 --quiet &
  gcloud storage rsync -r gs://bench-src gs://gc-euw1 --quiet &
  wait -n && wait -n"

echo "== replica object counts (expected $expected each)"
for bucket in lb-ev-use1 lb-ev-euw1 lb-rc-use1 lb-rc-euw1 rc-use1 rc-euw1 gc-use1 gc-euw1; do
  printf '%-12s %s\n' "$bucket" "$(count_objects "$bucket")"
done
