#!/usr/bin/env bash
# Bulk job figures (issue 12), everything on this machine: the dev broker, redis-server, the
# emulator (posting Meta's status webhooks back to a receiver), wafleet-bulk and the sender.
#   1. one number at 80/s, one sender: a job of N80 recipients, paused for 3 s every 30 s;
#   2. one number at 1,000/s (Meta's upgraded throughput), three sender replicas: N1000.
# While each job runs, replies to people (priority reply) go out at 2/s (20/s in run 2).
# The sender (and bulk) are configured at 99 % of the limit (PACE_PERCENT): a send arrives at
# Meta a little after its slot, by a varying amount, and at exactly the limit that jitter alone
# puts 81 in some second. Printed: seconds over the limit, the most in any 1 s window, utilisation of the limit while
# not paused, people sent twice, pause-to-silence p50/p99/max, the replies' send latency, and
# wafleet-bulk's peak RSS.
#   bench/run_bulk_bench.sh [N80] [N1000]      (defaults 100000 100000: about 23 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
n80=${1:-100000}
n1000=${2:-100000}
scripts/build release >/dev/null
bin=build/bin
run=$(mktemp -d /tmp/wafleet-bulkbench-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

one_run() {  # rate senders count reply_rate label
  local rate=$1 senders=$2 count=$3 reply_rate=$4 label=$5
  local dir="$run/$label"
  mkdir -p "$dir"
  local local_pids=()
  "$bin/wafleet-devbroker" --bootstrap-file "$dir/bootstrap" > "$dir/devbroker.log" 2>&1 & local_pids+=($!)
  local rport; rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no > "$dir/redis.log" 2>&1 & local_pids+=($!)
  for _ in $(seq 1 100); do [[ -s "$dir/bootstrap" ]] && break; sleep 0.05; done
  export WAFLEET_KAFKA_BROKERS; WAFLEET_KAFKA_BROKERS=$(cat "$dir/bootstrap")
  export WAFLEET_REDIS_URL="redis://127.0.0.1:$rport/0" WAFLEET_ACCESS_TOKEN=t WAFLEET_APP_SECRET=s \
    WAFLEET_LOG_LEVEL=warn WAFLEET_ENFORCE_WINDOW=false WAFLEET_NUMBER_RATE=$(( rate * ${PACE_PERCENT:-99} / 100 )) \
    WAFLEET_PORTFOLIO_DAILY_LIMIT=unlimited
  local listen="127.0.0.1:$(free_port)"
  "$bin/wafleet-receiver" --listen "$listen" > "$dir/receiver.log" 2>&1 & local_pids+=($!)
  local status_args=(--status-url "http://$listen/webhook" --status-app-secret s)
  [[ "${STATUSES:-1}" == 0 ]] && status_args=()
  "$bin/wafleet-graph-emulator" --listen 127.0.0.1:0 --port-file "$dir/gport" --http-threads 4 \
    "${status_args[@]}" > "$dir/emu.log" 2>&1 & local_pids+=($!)
  for _ in $(seq 1 100); do [[ -s "$dir/gport" ]] && break; sleep 0.05; done
  local graph="http://127.0.0.1:$(cat "$dir/gport")"
  for i in $(seq 1 "$senders"); do
    WAFLEET_NUMBER_BURST=${BURST:-1} WAFLEET_ADMIN_LISTEN=127.0.0.1:0 "$bin/wafleet-sender" --graph-base "$graph" \
      > "$dir/sender-$i.log" 2>&1 & local_pids+=($!)
  done
  WAFLEET_ADMIN_LISTEN=127.0.0.1:0 "$bin/wafleet-bulk" --storage-dir "$dir/store" > "$dir/bulk.log" 2>&1 &
  local bulk_pid=$!; local_pids+=($bulk_pid)
  pids+=("${local_pids[@]}")
  sleep 8  # group joins on the dev broker
  local pnid=106540352242922
  python3 -c "
import sys
print('to,body.1')
for i in range($count): print('4477%08d,Person %d' % (i, i))" > "$dir/list.csv"
  local t0; t0=$(date +%s%3N)
  local job; job=$("$bin/wafleet" bulk create --file "$dir/list.csv" --phone-number-id $pnid \
                    --template spring_sale --language en_US 2>/dev/null)
  echo "   job $job: $count recipients created in $(( $(date +%s%3N) - t0 )) ms"
  local expect_s=$(( count / rate ))
  "$bin/bench_bulk" --kafka-brokers "$WAFLEET_KAFKA_BROKERS" --pnid $pnid --rate "$reply_rate" \
    --tag reply replies --seconds $(( expect_s > 600 ? 600 : expect_s )) > "$dir/replies.out" &
  local reply_pid=$!
  : > "$dir/pauses"
  local next_pause=$(( $(date +%s) + 30 ))
  while :; do
    state=$("$bin/wafleet" bulk show "$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    [[ "$state" == COMPLETED || "$state" == FAILED || "$state" == CANCELLED ]] && break
    if (( $(date +%s) >= next_pause )); then
      p=$(date +%s%3N)
      "$bin/wafleet" bulk pause "$job" > /dev/null || true
      sleep 3
      q=$(date +%s%3N)
      "$bin/wafleet" bulk resume "$job" > /dev/null || true
      echo "$p $q" >> "$dir/pauses"
      next_pause=$(( $(date +%s) + 30 ))
    fi
    sleep 1
  done
  wait "$reply_pid" || true
  echo "   $("$bin/wafleet" bulk show "$job" | python3 -c 'import json,sys; j=json.load(sys.stdin); c=j["counts"]; print(j["state"], "sent", j["sent_total"], "delivered", c["delivered"], "failed", c["failed"], "skipped", c["skipped"])')"
  "$bin/bench_bulk" --graph "$graph" --pnid $pnid --rate "$rate" --tag reply analyse --pauses "$dir/pauses"
  echo "   wafleet-bulk peak RSS: $(grep VmHWM /proc/$bulk_pid/status | awk '{print $2/1024 " MiB"}')"
  echo "   CPU seconds per process (2 cores):$(for p in "${local_pids[@]}"; do
    ps -o comm=,cputimes= -p "$p" 2>/dev/null | awk '{printf " %s=%s", $1, $2}'; done)"
  for p in "${local_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${local_pids[@]}" 2>/dev/null || true
}

if (( n80 > 0 )); then
  echo "1. one number at 80/s, one sender, $n80 recipients, a 3 s pause every 30 s, replies at 2/s:"
  one_run 80 1 "$n80" 2 r80
fi
if (( n1000 > 0 )); then
  echo "2. one number at 1000/s, three senders, $n1000 recipients, a 3 s pause every 30 s, replies at 20/s:"
  one_run 1000 3 "$n1000" 20 r1000
fi
