#!/usr/bin/env bash
# Store ingest (issue 13): wafleet-store's events/s against a plain COPY of the same rows into the
# same database. Everything on this machine: the dev broker, a PostgreSQL cluster of its own
# (default settings: fsync on), wafleet-store.
#   1. N inbound messages (wa.inbound, 1,000 people) and 2N statuses (sent, delivered: wa.status)
#      are put on Kafka first; then wafleet-store starts and the clock runs from its first row
#      to the last (the group join is left out);
#   2. the rows it wrote are copied out, the tables emptied, and the same rows COPY'd back in
#      (one COPY per table, the day partitions already there): the ceiling for these rows.
#   bench/run_store_bench.sh [N]     (default 30000: the dev broker keeps about 5 MB a partition,
#   so a larger backlog loses its oldest records before the store reads them)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-30000}
scripts/build release >/dev/null
bin=build/bin
run=$(mktemp -d /tmp/wafleet-storebench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/postgres stop "$run/pg" || true
  rm -rf "$run"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
now_ms() { date +%s%3N; }

"$bin/wafleet-devbroker" --bootstrap-file "$run/bootstrap" > "$run/devbroker.log" 2>&1 & pids+=($!)
db=$(scripts/postgres start "$run/pg" "$(free_port)")
for _ in $(seq 1 100); do [[ -s "$run/bootstrap" ]] && break; sleep 0.05; done
export WAFLEET_KAFKA_BROKERS; WAFLEET_KAFKA_BROKERS=$(cat "$run/bootstrap")

python3 - "$n" "$run" <<'PY'
import json, sys, time
n, run = int(sys.argv[1]), sys.argv[2]
now = int(time.time()) - 3600
with open(run + "/inbound.txt", "w") as fin, open(run + "/status.txt", "w") as fst:
    for i in range(n):
        who = "4477009%05d" % (i % 1000)
        key = "106540352242922:" + who
        wamid = "wamid.BENCH%08d" % i
        ts = now + i // 100
        raw = {"from": who, "id": wamid, "timestamp": str(ts), "type": "text",
               "text": {"body": "Hello, this is message %d of the store bench, about my order" % i}}
        ev = {"v": 1, "kind": "message", "event_id": "m:106540352242922:" + wamid,
              "conversation_key": key, "identity": who, "phone_number_id": "106540352242922",
              "display_phone_number": "15550001111", "waba_id": "1", "field": "messages",
              "wa_id": who, "profile_name": "Person %d" % (i % 1000), "type": "text",
              "message_id": wamid, "timestamp": ts, "received_at_ms": ts * 1000, "source": "meta",
              "trace_id": "0" * 32, "raw": raw}
        fin.write(key + "|" + json.dumps(ev, separators=(",", ":")) + "\n")
        for k, st in enumerate(("sent", "delivered")):
            out = "wamid.OUT%08d" % i
            sraw = {"id": out, "status": st, "timestamp": str(ts + 1 + k), "recipient_id": who,
                    "pricing": {"billable": True, "pricing_model": "PMP", "category": "service"}}
            sev = {"v": 1, "kind": "status", "event_id": "s:106540352242922:%s:%s" % (out, st),
                   "conversation_key": key, "identity": who, "phone_number_id": "106540352242922",
                   "field": "messages", "wa_id": who, "type": st, "message_id": out,
                   "timestamp": ts + 1 + k, "received_at_ms": (ts + 1 + k) * 1000, "source": "meta",
                   "raw": sraw}
            fst.write(key + "|" + json.dumps(sev, separators=(",", ":")) + "\n")
PY
kcat -b "$WAFLEET_KAFKA_BROKERS" -P -t wa.inbound -K '|' -z none -l "$run/inbound.txt"
kcat -b "$WAFLEET_KAFKA_BROKERS" -P -t wa.status -K '|' -z none -l "$run/status.txt"
total=$(( n * 3 ))
echo "store ingest: $n messages + $(( n * 2 )) statuses = $total events on Kafka ($(du -h "$run/inbound.txt" | cut -f1) + $(du -h "$run/status.txt" | cut -f1))"

WAFLEET_DATABASE_URL=$db WAFLEET_LOG_LEVEL=warn "$bin/wafleet-store" --admin-listen 127.0.0.1:0 \
  --topics wa.inbound,wa.status > "$run/store.log" 2>&1 &
store_pid=$!; pids+=($store_pid)
rows() { psql "$db" -qAt -c "SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM statuses)" 2>/dev/null || echo 0; }
first=0
while :; do
  r=$(rows)
  if (( first == 0 && r > 0 )); then first=$(now_ms); first_rows=$r; fi
  (( r >= total )) && break
  sleep 0.1
done
last=$(now_ms)
span=$(( last - first ))
rate=$(python3 -c "print(round(($total - $first_rows) / ($span / 1000.0)))")
echo "  wafleet-store: $total rows in $span ms after the first: $rate events/s"
echo "  wafleet-store peak RSS: $(grep VmHWM /proc/$store_pid/status | awk '{print $2/1024 " MiB"}'), CPU $(ps -o cputimes= -p $store_pid) s"
kill "$store_pid"; wait "$store_pid" 2>/dev/null || true

psql "$db" -qAt -c "\\copy (SELECT day,id,conversation_key,direction,type,body,at,raw FROM messages) TO '$run/messages.copy'"
psql "$db" -qAt -c "\\copy (SELECT day,wamid,status,at,error_code,error_title,raw FROM statuses) TO '$run/statuses.copy'"
psql "$db" -qAt -c "TRUNCATE messages, statuses; CHECKPOINT"
t0=$(now_ms)
psql "$db" -qAt -c "\\copy messages (day,id,conversation_key,direction,type,body,at,raw) FROM '$run/messages.copy'"
psql "$db" -qAt -c "\\copy statuses (day,wamid,status,at,error_code,error_title,raw) FROM '$run/statuses.copy'"
t1=$(now_ms)
copy_rate=$(python3 -c "print(round($total / (($t1 - $t0) / 1000.0)))")
echo "  plain COPY of the same rows: $(( t1 - t0 )) ms: $copy_rate rows/s"
echo "  wafleet-store / COPY: $(python3 -c "print(round(100.0 * $rate / $copy_rate, 1))") %"
