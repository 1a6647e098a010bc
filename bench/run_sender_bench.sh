#!/usr/bin/env bash
# Sender rate precision and throughput (issue 5), everything on this machine:
#   1. three wafleet-sender replicas share one business number limited to 80/s (configured at
#      79/s: the limiter holds its configured rate exactly, and the 1/s left absorbs the jitter of
#      arrivals at Meta, which alone would put 81 in some second); a backlog of
#      SECONDS x 80 requests (plus a few people written to repeatedly, for the pair limit) goes
#      through them; the emulator's call log gives per-second counts (max, mean, utilisation)
#      and pair-limit violations;
#   2. one replica with limits off: messages/s to the emulator;
#   3. the emulator's own ceiling: bench_sender posting the same bodies with plain libcurl.
#   bench/run_sender_bench.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
scripts/build release >/dev/null
run=$(mktemp -d /tmp/wafleet-senderbench-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
build/bin/wafleet-devbroker --bootstrap-file "$run/bootstrap" > "$run/devbroker.log" 2>&1 & pids+=($!)
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no > "$run/redis.log" 2>&1 & pids+=($!)
build/bin/wafleet-graph-emulator --listen 127.0.0.1:0 --port-file "$run/gport" --access-token t > "$run/emu.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do [[ -s "$run/bootstrap" && -s "$run/gport" ]] && break; sleep 0.05; done
B=$(cat "$run/bootstrap"); G="http://127.0.0.1:$(cat "$run/gport")"
export WAFLEET_KAFKA_BROKERS="$B" WAFLEET_REDIS_URL="redis://127.0.0.1:$rport/0" WAFLEET_ACCESS_TOKEN=t \
  WAFLEET_GRAPH_BASE="$G" WAFLEET_ENFORCE_WINDOW=false WAFLEET_LOG_LEVEL=warn
n=$((secs * 80))
echo "1. three replicas, one number at 80/s, backlog of $n requests to different people:"
senders=()
for i in 1 2 3; do
  WAFLEET_NUMBER_RATE=${RATE:-79} WAFLEET_NUMBER_BURST=1 WAFLEET_ADMIN_LISTEN=127.0.0.1:0 \
    build/bin/wafleet-sender > "$run/sender-$i.log" 2>&1 &
  senders+=($!); pids+=($!)
done
sleep 5  # group joins
build/bin/bench_sender --kafka-brokers "$B" --graph "$G" produce --count "$n" --tag rate
build/bin/bench_sender --kafka-brokers "$B" --graph "$G" analyse --count "$n" --tag rate --rate 80
echo "   the same replicas, 1600 requests of which 1 in 10 go to 20 people (8 each: pair limit 1 per 6 s, burst 5):"
build/bin/bench_sender --kafka-brokers "$B" --graph "$G" produce --count 1600 --repeat-people 20 --tag pair
build/bin/bench_sender --kafka-brokers "$B" --graph "$G" analyse --count 1600 --tag pair --rate 80 --pair-interval-ms 6000 --pair-burst 5
kill "${senders[@]}" 2>/dev/null || true
echo "2. one replica, limits off:"
WAFLEET_NUMBER_RATE=1000000 WAFLEET_NUMBER_BURST=1000000 WAFLEET_PAIR_INTERVAL_MS=1 WAFLEET_PAIR_BURST=1000000 \
  WAFLEET_GROUP_ID=bench-fast WAFLEET_ADMIN_LISTEN=127.0.0.1:0 build/bin/wafleet-sender > "$run/sender-fast.log" 2>&1 & pids+=($!)
sleep 5
build/bin/bench_sender --kafka-brokers "$B" --graph "$G" produce --count 20000 --tag fast
build/bin/bench_sender --kafka-brokers "$B" --graph "$G" analyse --count 20000 --tag fast
echo "3. the emulator's ceiling (plain libcurl, one connection, same bodies):"
build/bin/bench_sender --kafka-brokers "$B" --graph "$G" ceiling --count 20000
