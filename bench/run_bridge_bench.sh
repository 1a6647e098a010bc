#!/usr/bin/env bash
# The agent bridge (issue 11), everything on this machine:
#   1. latency: signed webhooks in bursts of 3 (300 ms apart) at RATES messages per minute through
#      receiver -> aggregator (debounce, 2 s quiet) -> bridge -> sender -> Meta (the emulator,
#      which is also the agent and answers at once). Printed per rate: the fleet's share of a
#      person's wait (reply at Meta minus the burst's last webhook minus the 2 s quiet window),
#      p50/p90/p99/max, and the agent's mean call time from the bridge's own histogram;
#   2. throughput: TURNS synthetic turns produced straight to wa.turns, answered by the bridge with
#      the instant agent (sender stopped): turns/s and the bridge's peak RSS.
#   bench/run_bridge_bench.sh [seconds-per-rate] [turns] [rates...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
turns=${2:-20000}
shift 2 2>/dev/null || true
rates=("$@")
[[ ${#rates[@]} -eq 0 ]] && rates=(1000 5000 20000)
scripts/build release >/dev/null
run=$(mktemp -d /tmp/wafleet-bridgebench-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
ready() { for _ in $(seq 1 300); do curl -s "http://127.0.0.1:$(cat "$1" 2>/dev/null)/readyz" 2>/dev/null | grep -q '^ok' && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }
bin=build/bin
$bin/wafleet-devbroker --bootstrap-file "$run/bootstrap" > "$run/devbroker.log" 2>&1 & pids+=($!)
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no > "$run/redis.log" 2>&1 & pids+=($!)
$bin/wafleet-graph-emulator --listen 127.0.0.1:0 --port-file "$run/gport" --access-token t > "$run/emu.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do [[ -s "$run/bootstrap" && -s "$run/gport" ]] && break; sleep 0.05; done
B=$(cat "$run/bootstrap"); G="http://127.0.0.1:$(cat "$run/gport")"
export WAFLEET_KAFKA_BROKERS="$B" WAFLEET_REDIS_URL="redis://127.0.0.1:$rport/0" WAFLEET_ACCESS_TOKEN=t \
  WAFLEET_APP_SECRET=bench-secret WAFLEET_LOG_LEVEL=warn
$bin/wafleet-receiver --listen 127.0.0.1:0 --port-file "$run/port" --admin-port-file "$run/receiver-admin" > "$run/receiver.log" 2>&1 & pids+=($!)
$bin/wafleet-aggregator --admin-port-file "$run/aggregator-admin" > "$run/aggregator.log" 2>&1 & pids+=($!)
# Meta's limits are not what is measured here: the sender's are set far above the load.
$bin/wafleet-sender --graph-base "$G" --number-rate 5000 --number-burst 500 --pair-interval-ms 100 \
  --pair-burst 20 --admin-port-file "$run/sender-admin" > "$run/sender.log" 2>&1 &
sender=$!; pids+=($!)
$bin/wafleet-bridge --agent-url "$G/v1" --admin-port-file "$run/bridge-admin" > "$run/bridge.log" 2>&1 &
bridge=$!; pids+=($!)
for w in aggregator sender bridge; do ready "$run/$w-admin"; done
sleep 1
url="http://127.0.0.1:$(cat "$run/port")/webhook"
agent_mean() {
  curl -s "http://127.0.0.1:$(cat "$run/bridge-admin")/metrics" \
    | awk '/^wafleet_bridge_agent_call_seconds_sum/ {s=$2} /^wafleet_bridge_agent_call_seconds_count/ {c=$2} END {if (c > 0) printf "%.2f", s / c * 1000; else print "-"}'
}
echo "1. the fleet's share of a person's wait (bursts of 3 messages 300 ms apart, quiet window 2 s):"
i=0
for rate in "${rates[@]}"; do
  i=$((i + 1))
  line=$($bin/bench_bridge --url "$url" --secret bench-secret --graph "$G" --rate "$rate" \
           --seconds "$secs" --pnid "77700011$i" --quiet-ms 2000 || true)
  echo "   $line agent_mean_ms=$(agent_mean)"
done
echo "2. throughput with an instant agent: $turns turns straight to wa.turns (sender stopped):"
kill "$sender" 2>/dev/null || true
python3 - "$turns" > "$run/turns.txt" <<'PY'
import json, sys, time
now = int(time.time() * 1000)
for i in range(int(sys.argv[1])):
    key = "888000111:1888%07d" % i
    turn = {"v": 1, "turn_id": "bench-%08d" % i, "conversation_key": key, "phone_number_id": "888000111",
            "wa_id": "1888%07d" % i, "identity": "1888%07d" % i,
            "items": [{"kind": "text", "message_id": "wamid.tb.%d" % i, "text": "Hi, where is my order %d?" % i}],
            "message_ids": ["wamid.tb.%d" % i], "messages": [],
            "window": {"opened_at_ms": now, "last_message_at_ms": now}}
    print(key + "|" + json.dumps(turn))
PY
answered() {
  curl -s "http://127.0.0.1:$(cat "$run/bridge-admin")/metrics" \
    | awk '/^wafleet_bridge_turns_total\{result="answered"\}/ {print $2}' | head -1
}
before=$(answered); before=${before:-0}
t0=$(date +%s.%N)
kcat -b "$B" -P -t wa.turns -K '|' -z none -l "$run/turns.txt"
want=$(python3 -c "print(int(float('$before')) + $turns)")
for _ in $(seq 1 1200); do
  now=$(answered); now=${now:-0}
  [[ $(python3 -c "print(1 if float('$now') >= $want else 0)") == 1 ]] && break
  sleep 0.1
done
t1=$(date +%s.%N)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$bridge/status")
python3 -c "
n = float('${now:-0}') - float('$before')
dt = $t1 - $t0
print('   answered %d turns in %.1f s: %.0f turns/s; bridge peak RSS %.1f MiB' % (n, dt, n / dt, $rss / 1024))"
