#!/usr/bin/env bash
# Receiver throughput: dev broker + redis-server + wafleet-receiver on this machine, loaded by
# bench_webhook_load (unique signed webhooks, keep-alive), then the same load on a no-op endpoint
# of the same HTTP server (the ceiling). Prints one line per run.
#   bench/run_receiver_bench.sh [seconds] [connections] [http-threads]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-256}
threads=${3:-2}
scripts/build release >/dev/null
run=$(mktemp -d /tmp/wafleet-bench-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
build/bin/wafleet-devbroker --bootstrap-file "$run/bootstrap" > "$run/devbroker.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do [[ -s "$run/bootstrap" ]] && break; sleep 0.05; done
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no > "$run/redis.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
WAFLEET_BOOTSTRAP_FILE="$run/bootstrap" WAFLEET_REDIS_URL="redis://127.0.0.1:$rport/0" \
WAFLEET_APP_SECRET=bench-secret WAFLEET_LOG_LEVEL=warn \
  build/bin/wafleet-receiver --listen 127.0.0.1:0 --port-file "$run/port" --http-threads "$threads" \
  > "$run/receiver.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do [[ -s "$run/port" ]] && break; sleep 0.05; done
port=$(cat "$run/port")
# warm-up (connections, topic metadata, producer id)
build/bin/bench_webhook_load --port "$port" --secret bench-secret --seconds 2 --connections 8 --unique 2000 >/dev/null
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, in clock ticks
rpid=$(pgrep -f "wafleet-receiver --listen" | head -1); bpid=${pids[0]}; dpid=${pids[1]}
r0=$(cpu "$rpid"); b0=$(cpu "$bpid"); d0=$(cpu "$dpid")
echo "receiver (dev broker + redis, ${threads} HTTP threads):"
out=$(build/bin/bench_webhook_load --port "$port" --secret bench-secret --seconds "$secs" --connections "$conns" --unique 400000)
echo "$out"
ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$out")
hz=$(getconf CLK_TCK)
awk -v r=$(( $(cpu "$rpid") - r0 )) -v b=$(( $(cpu "$bpid") - b0 )) -v d=$(( $(cpu "$dpid") - d0 )) \
    -v hz="$hz" -v n="$ok" 'BEGIN { printf "cpu during the run (s): receiver=%.2f devbroker=%.2f redis=%.2f; per webhook (us): receiver=%.1f devbroker=%.1f redis=%.1f\n", r/hz, b/hz, d/hz, 1e6*r/hz/n, 1e6*b/hz/n, 1e6*d/hz/n }'
echo "no-op endpoint, same HTTP server (${threads} threads):"
build/bin/bench_webhook_load --noop --noop-threads "$threads" --seconds "$secs" --connections "$conns" --unique 20000
echo "redis keys after the run: $(redis-cli -p "$rport" dbsize)"
