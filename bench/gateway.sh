#!/usr/bin/env bash
# What the gateway costs, measured from outside with wrk: the same
# prediction sent straight to an inference server on loopback, and through
# the gateway in front of that server. The server and the gateway are the
# release `loopback` example of lifeboat-gateway (functions/gateway/examples/
# loopback.rs), each in its own process; the gateway runs as on Cloud Run
# (service wrapper, request span, one JSON log line per request, here to
# /dev/null) with its routing table in the embedded store.
#
# Two loads, each for DURATION seconds per path after a 2 s warm-up, paths
# alternating, ROUNDS times; the table gives the medians:
#   - latency: one connection, one request at a time (wrk --latency);
#   - throughput: CONNECTIONS connections at once.
# wrk, the server and the gateway share the machine's cores.
#
#   bench/gateway.sh                               # installs wrk if missing
#   ROUNDS=5 DURATION=20 CONNECTIONS=64 bench/gateway.sh
#   LIFEBOAT_GATEWAY_RETRY=0 bench/gateway.sh      # any gateway variable passes through
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"

source scripts/debian-packages.sh
needs_debian_package wrk
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -q -p lifeboat-gateway --example loopback
LOOPBACK="$TARGET/release/examples/loopback"

WORK=$(mktemp -d)
PIDS=()
stop() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap stop EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
wait_port() { # port
  local deadline=$((SECONDS + 30))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "nothing listens on 127.0.0.1:$1" >&2; exit 1; }
    sleep 0.1
  done
}

UPSTREAM_PORT=$(free_port)
"$LOOPBACK" upstream "$UPSTREAM_PORT" &
PIDS+=($!)
wait_port "$UPSTREAM_PORT"
GATEWAY_PORT=$(free_port)
"$LOOPBACK" gateway "$GATEWAY_PORT" "http://127.0.0.1:$UPSTREAM_PORT/predict" >/dev/null &
PIDS+=($!)
wait_port "$GATEWAY_PORT"
DIRECT_URL="http://127.0.0.1:$UPSTREAM_PORT/predict"
GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT/predict/bench/model"

cat >"$WORK/predict.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"instances":[[0.1,0.2,0.3,0.4]]}'
wrk.headers["Content-Type"] = "application/json"
LUA
for url in "$DIRECT_URL" "$GATEWAY_URL"; do
  answer=$(curl -sf -XPOST -H 'content-type: application/json' \
    -d '{"instances":[[0.1,0.2,0.3,0.4]]}' "$url") || { echo "$url does not answer" >&2; exit 1; }
  [[ "$answer" == *predictions* ]] || { echo "$url answered $answer" >&2; exit 1; }
done

# Runs wrk and prints "requests/s p50 p90 p99" (latencies in µs); fails
# when any request failed.
measure() { # url connections
  local out
  out=$(wrk -t1 -c"$2" -d"${DURATION}s" --latency -s "$WORK/predict.lua" "$1")
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "failed requests against $1:" >&2; echo "$out" >&2; exit 1
  fi
  awk '
    function micros(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v * 1000 }
      if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000000 }
      return v
    }
    $1 == "50%" { p50 = micros($2) }
    $1 == "90%" { p90 = micros($2) }
    $1 == "99%" { p99 = micros($2) }
    $1 == "Requests/sec:" { rate = $2 }
    END { printf "%s %s %s %s\n", rate, p50, p90, p99 }' <<<"$out"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for path in direct gateway; do : >"$WORK/$path.latency"; : >"$WORK/$path.throughput"; done
for ((round = 1; round <= ROUNDS; round++)); do
  order=(direct gateway)
  ((round % 2 == 0)) && order=(gateway direct)
  for path in "${order[@]}"; do
    url=$DIRECT_URL
    [[ $path == gateway ]] && url=$GATEWAY_URL
    wrk -t1 -c1 -d2s -s "$WORK/predict.lua" "$url" >/dev/null
    measure "$url" 1 >>"$WORK/$path.latency"
    measure "$url" "$CONNECTIONS" >>"$WORK/$path.throughput"
    echo "round $round $path: $(tail -n1 "$WORK/$path.latency") | $(tail -n1 "$WORK/$path.throughput")" >&2
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

column_median() { awk -v c="$2" '{ print $c }' "$1" | median; }
echo "wrk on loopback, ${DURATION} s per run, median of $ROUNDS rounds"
echo
echo "| path | 1 connection: p50 | p90 | p99 | requests/s | $CONNECTIONS connections: requests/s | p50 | p99 |"
echo "|---|---|---|---|---|---|---|---|"
for path in direct gateway; do
  lat="$WORK/$path.latency" thr="$WORK/$path.throughput"
  printf '| %s | %.0f µs | %.0f µs | %.0f µs | %.0f | %.0f | %.0f µs | %.0f µs |\n' \
    "$path" "$(column_median "$lat" 2)" "$(column_median "$lat" 3)" "$(column_median "$lat" 4)" \
    "$(column_median "$lat" 1)" "$(column_median "$thr" 1)" "$(column_median "$thr" 2)" \
    "$(column_median "$thr" 4)"
done
added() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }
printf '| added by the gateway | %s µs | %s µs | %s µs | | | %s µs | %s µs |\n' \
  "$(added "$(column_median "$WORK/direct.latency" 2)" "$(column_median "$WORK/gateway.latency" 2)")" \
  "$(added "$(column_median "$WORK/direct.latency" 3)" "$(column_median "$WORK/gateway.latency" 3)")" \
  "$(added "$(column_median "$WORK/direct.latency" 4)" "$(column_median "$WORK/gateway.latency" 4)")" \
  "$(added "$(column_median "$WORK/direct.throughput" 2)" "$(column_median "$WORK/gateway.throughput" 2)")" \
  "$(added "$(column_median "$WORK/direct.throughput" 4)" "$(column_median "$WORK/gateway.throughput" 4)")"
