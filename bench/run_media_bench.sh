#!/usr/bin/env bash
# Media throughput: wafleet-graph-emulator (its own process) serving files, bench_media fetching
# them with the media worker's code and with plain libcurl (the ceiling), 100 KB and 5 MB files,
# then 16 MB files for peak memory.
#   bench/run_media_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build release >/dev/null
run=$(mktemp -d /tmp/wafleet-mediabench-XXXXXX)
pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
build/bin/wafleet-graph-emulator --listen 127.0.0.1:0 --port-file "$run/port" > "$run/emulator.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [[ -s "$run/port" ]] && break; sleep 0.05; done
g="http://127.0.0.1:$(cat "$run/port")"
build/bin/bench_media --graph "$g" --size 102400 --count 500 --dir "$run/store"
build/bin/bench_media --graph "$g" --size 5242880 --count 40 --dir "$run/store"
build/bin/bench_media --graph "$g" --size 16777216 --count 8 --dir "$run/store"
