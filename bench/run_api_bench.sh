#!/usr/bin/env bash
# API latency over a large record (issue 13): a PostgreSQL cluster of its own with the store's
# schema, filled by SQL with N messages (default 1,000,000) over 30 days in 10,000 conversations
# (half inbound, half outbound, each outbound with its result and two statuses), then
# wafleet-api. One client, one keep-alive connection, requests one after another; printed:
# p50/p99/max for the inbox page, a random conversation's newest page, and the page after it.
# Then erasure: two more people with 10,000 messages each (over the same 30 days, with results,
# statuses, media rows and turns), one forgotten by `wafleet forget`, one by DELETE
# /v1/people/{id}; printed: the wall time of each and what it removed.
#   bench/run_api_bench.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
scripts/build release >/dev/null
bin=build/bin
run=$(mktemp -d /tmp/wafleet-apibench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/postgres stop "$run/pg" || true
  rm -rf "$run"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

db=$(scripts/postgres start "$run/pg" "$(free_port)")
t0=$(date +%s)
psql "$db" -q -v ON_ERROR_STOP=1 -f workers/store/migrations/0001_record.sql
psql "$db" -q -v ON_ERROR_STOP=1 <<SQL
DO \$\$
DECLARE d date; t text;
BEGIN
  FOR i IN 0..30 LOOP
    d := current_date - i;
    FOREACH t IN ARRAY ARRAY['messages','statuses','results','media','turn_messages','handoffs'] LOOP
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                     t || '_p' || to_char(d, 'YYYYMMDD'), t, d, d + 1);
    END LOOP;
  END LOOP;
END \$\$;
-- message i: conversation i % 10000, at spread over the last 30 days (newest last), odd ones ours.
INSERT INTO messages (day, id, conversation_key, direction, type, body, at, raw)
SELECT (now() - (($n - i) * interval '30 days' / $n))::date,
       CASE WHEN i % 2 = 0 THEN 'wamid.in.' || i ELSE 'req.' || i END,
       '106540352242922:4477' || lpad((i % 10000)::text, 8, '0'),
       CASE WHEN i % 2 = 0 THEN 'in' ELSE 'out' END, 'text', 'message number ' || i,
       now() - (($n - i) * interval '30 days' / $n),
       jsonb_build_object('type', 'text', 'text', jsonb_build_object('body', 'message number ' || i))
  FROM generate_series(1, $n) i;
INSERT INTO results (day, request_id, status, at, wamid, attempts)
SELECT day, id, 'sent', at + interval '1 second', 'wamid.out.' || substr(id, 5), 1
  FROM messages WHERE direction = 'out';
INSERT INTO statuses (day, wamid, status, at, raw)
SELECT (at + interval '2 seconds')::date, wamid, s, at + interval '2 seconds', '{}'::jsonb
  FROM results, unnest(ARRAY['sent','delivered']) s;
-- The two people erased at the end: 10,000 messages each over the 30 days.
INSERT INTO messages (day, id, conversation_key, direction, type, body, at, raw)
SELECT (now() - (i * interval '30 days' / 10000))::date,
       CASE WHEN i % 2 = 0 THEN 'wamid.in.' || p || '.' || i ELSE 'req.' || p || '.' || i END,
       '106540352242922:' || p, CASE WHEN i % 2 = 0 THEN 'in' ELSE 'out' END, 'text', 'erase me ' || i,
       now() - (i * interval '30 days' / 10000), '{"type": "text"}'::jsonb
  FROM generate_series(1, 10000) i, unnest(ARRAY['447799000001', '447799000002']) p;
INSERT INTO results (day, request_id, status, at, wamid, attempts)
SELECT day, id, 'sent', at + interval '1 second', 'wamid.out.' || substr(id, 5), 1
  FROM messages WHERE direction = 'out' AND conversation_key LIKE '%:4477990000%';
INSERT INTO statuses (day, wamid, status, at, raw)
SELECT (r.at + interval '2 seconds')::date, r.wamid, s, r.at + interval '2 seconds', '{}'::jsonb
  FROM results r, unnest(ARRAY['sent','delivered','read']) s WHERE r.request_id LIKE 'req.4477990000%';
INSERT INTO turn_messages (day, message_id, turn_id)
SELECT day, id, 'turn.' || id FROM messages WHERE direction = 'in' AND conversation_key LIKE '%:4477990000%';
INSERT INTO media (day, message_id, conversation_key, type, status, storage_uri, sha256, size, at)
SELECT day, id, conversation_key, 'image', 'stored', 'file://$run/media/' || id, md5(id), 5, at
  FROM messages WHERE direction = 'in' AND conversation_key LIKE '%:4477990000%' AND right(id, 2) = '00';
INSERT INTO conversations (key, phone_number_id, identity, owner, last_at, last_id, last_direction, last_type, last_body)
SELECT DISTINCT ON (conversation_key) conversation_key, '106540352242922', split_part(conversation_key, ':', 2),
       'bot', at, id, direction, type, body
  FROM messages ORDER BY conversation_key, at DESC;
INSERT INTO contacts (id, wa_id, profile_name, last_seen) SELECT identity, identity, 'Person', last_at FROM conversations;
ANALYZE;
SQL
echo "api: $(psql "$db" -qAt -c 'SELECT count(*) FROM messages') messages, $(psql "$db" -qAt -c 'SELECT count(*) FROM statuses') statuses, $(psql "$db" -qAt -c 'SELECT count(*) FROM conversations') conversations stored in $(( $(date +%s) - t0 )) s"

key=bench-key
echo "bench $(printf %s "$key" | sha256sum | cut -d' ' -f1)" > "$run/keys"
"$bin/wafleet-devbroker" --bootstrap-file "$run/bootstrap" > "$run/devbroker.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do [[ -s "$run/bootstrap" ]] && break; sleep 0.05; done
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$run" --save "" > "$run/redis.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
export WAFLEET_REDIS_URL="redis://127.0.0.1:$redis_port/0" WAFLEET_SUPPRESSION_SALT=bench-salt
WAFLEET_KAFKA_BROKERS=$(cat "$run/bootstrap") WAFLEET_DATABASE_URL=$db WAFLEET_LOG_LEVEL=warn \
  WAFLEET_RATE=100000 WAFLEET_BURST=100000 "$bin/wafleet-api" --listen 127.0.0.1:0 \
  --port-file "$run/port" --api-keys-file "$run/keys" --admin-listen 127.0.0.1:0 > "$run/api.log" 2>&1 &
api_pid=$!; pids+=($api_pid)
for _ in $(seq 1 200); do [[ -s "$run/port" ]] && break; sleep 0.05; done
python3 - "$(cat "$run/port")" "$key" <<'PY'
import http.client, json, random, sys, time
port, key = int(sys.argv[1]), sys.argv[2]
conn = http.client.HTTPConnection("127.0.0.1", port)
headers = {"Authorization": "Bearer " + key}
def get(path):
    t = time.perf_counter()
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t) * 1000
    if r.status != 200:
        raise SystemExit("GET %s: %d %s" % (path, r.status, body[:200]))
    return ms, json.loads(body)
def report(name, xs):
    xs.sort()
    print("  %-44s n=%d p50=%.1f ms p99=%.1f ms max=%.1f ms" % (name, len(xs), xs[len(xs) // 2], xs[int(len(xs) * 0.99) - 1], xs[-1]))
random.seed(7)
for _ in range(20):
    get("/v1/conversations?limit=50")
inbox, inbox2, newest, older = [], [], [], []
for _ in range(300):
    ms, j = get("/v1/conversations?limit=50"); inbox.append(ms)
    ms, _ = get("/v1/conversations?limit=50&cursor=" + j["next_cursor"]); inbox2.append(ms)
    k = "106540352242922:4477%08d" % random.randrange(10000)
    ms, j = get("/v1/conversations/%s/messages?limit=50" % k); newest.append(ms)
    assert len(j["items"]) == 50 and j["items"][0]["status"] in ("delivered", "")
    ms, j = get("/v1/conversations/%s/messages?limit=50&cursor=%s" % (k, j["next_cursor"])); older.append(ms)
report("inbox: GET /v1/conversations (50)", inbox)
report("inbox, second page (cursor)", inbox2)
report("a conversation's newest 50 messages", newest)
report("the 50 before them (cursor)", older)
PY
echo "erasure of a person with 10,000 messages ($(psql "$db" -qAt -c "SELECT count(*) FROM media WHERE conversation_key LIKE '%:4477990000%'") media rows in all; the files do not exist):"
t0=$(date +%s%N)
WAFLEET_KAFKA_BROKERS=$(cat "$run/bootstrap") WAFLEET_DATABASE_URL=$db "$bin/wafleet" forget 447799000001 \
  --actor bench > "$run/forget.json"
t1=$(date +%s%N)
echo "  wafleet forget (the whole command): $(( (t1 - t0) / 1000000 )) ms; removed $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["removed"])' "$run/forget.json")"
python3 - "$(cat "$run/port")" "$key" <<'PY'
import http.client, json, sys, time
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
t = time.perf_counter()
conn.request("DELETE", "/v1/people/447799000002", headers={"Authorization": "Bearer " + sys.argv[2]})
r = conn.getresponse()
body = json.loads(r.read())
ms = (time.perf_counter() - t) * 1000
if r.status != 200:
    raise SystemExit("DELETE: %d %s" % (r.status, body))
print("  DELETE /v1/people/{id}: %.0f ms; removed %s" % (ms, body["removed"]))
PY
echo "  wafleet-api peak RSS: $(grep VmHWM /proc/$api_pid/status | awk '{print $2/1024 " MiB"}')"
