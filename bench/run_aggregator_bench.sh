#!/usr/bin/env bash
# Aggregator throughput and close latency on the dev broker + redis-server, one instance.
#   bench/run_aggregator_bench.sh [messages] [people]
# 1. ceiling: consume the same records and produce each to another topic, no logic;
# 2. aggregator: a backlog of N events (people x N/people messages, one burst each) -> turns;
#    rate = messages / (last turn acknowledged - partitions assigned);
# 3. close latency: live bursts, turn readable on wa.turns minus the window's due time.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
people=${2:-10000}
scripts/build release >/dev/null
run=$(mktemp -d /tmp/wafleet-aggbench-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
start_stack() {
  build/bin/wafleet-devbroker --bootstrap-file "$run/bootstrap" --extra-topics bench.copy:12 > "$run/devbroker.log" 2>&1 & pids+=($!)
  for _ in $(seq 1 100); do [[ -s "$run/bootstrap" ]] && break; sleep 0.05; done
  rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no > "$run/redis.log" 2>&1 & pids+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
  B=$(cat "$run/bootstrap")
}
start_stack
build/bin/bench_aggregator --kafka-brokers "$B" fill --count "$n" --people "$people"
echo "1. ceiling (same records, consume + produce + acks, no logic):"
build/bin/bench_aggregator --kafka-brokers "$B" copy --count "$n"
echo "2. aggregator, one instance, backlog of $n messages:"
WAFLEET_KAFKA_BROKERS="$B" WAFLEET_REDIS_URL="redis://127.0.0.1:$rport/0" WAFLEET_LOG_LEVEL=info \
  build/bin/wafleet-aggregator > "$run/aggregator.log" 2>&1 & pids+=($!)
out=$(build/bin/bench_aggregator --kafka-brokers "$B" turns --messages "$n")
echo "   $out"
assigned=$(grep -m1 consumer.assigned "$run/aggregator.log" | python3 -c 'import sys,json,datetime; t=json.loads(sys.stdin.read())["ts"]; print(int(datetime.datetime.strptime(t,"%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()*1000))')
last=$(echo "$out" | sed -E 's/.*last_turn_wall_ms=([0-9]+).*/\1/')
python3 -c "print('   aggregator: %d messages in %.2f s = %.0f messages/s (from partitions assigned to last turn)' % ($n, ($last-$assigned)/1000, $n*1000/($last-$assigned)))"
echo "   aggregator RSS: $(ps -o rss= -p "$(pgrep -f wafleet-aggregator | head -1)") KiB"
echo "3. close latency, live bursts from 500 people, 20 s:"
build/bin/bench_aggregator --kafka-brokers "$B" live --people 500 --seconds 20
curl -s "http://$(grep -m1 worker.started "$run/aggregator.log" | sed -E 's/.*"admin":"([^"]+)".*/\1/')/metrics" | grep -E "close_lag_seconds_(sum|count)" || true
