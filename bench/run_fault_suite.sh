#!/usr/bin/env bash
# The whole-fleet fault suite (issue 14) with its figures: a 3-node Apache Kafka cluster (KRaft,
# RF 3, min.insync.replicas=2), redis-server with AOF, the Graph API emulator as Meta and the
# agent, and receiver, aggregator x2, media, bridge, sender x2 and bulk as processes. People send
# bursts (texts, photos, voice notes) and a bulk job runs while every worker is killed with
# kill -9 and restarted, redis-server restarts, Graph answers 5xx and 130429 and media is slow,
# bad input arrives, and two brokers are killed one after the other. Prints what reached Meta and
# the counts that must be 0 (docs/RELIABILITY.md).
#   bench/run_fault_suite.sh [PEOPLE] [BURSTS] [BULK] [BURST_EVERY_MS]
#     defaults 24 4 200 6500: about 90 s, the CI run. The long run, about 10 minutes:
#     bench/run_fault_suite.sh 2000 4 3000 150000 (the faults repeat, round after round, while
#     people are still sending)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build release >/dev/null
cdir=$(mktemp -d /tmp/wafleet-fault-cluster-XXXXXX)
trap 'scripts/kafka stop-cluster "$cdir" >/dev/null 2>&1 || true; rm -rf "$cdir"' EXIT
scripts/kafka start-cluster "$cdir" >/dev/null
WAFLEET_TEST_KAFKA_CLUSTER=$cdir WAFLEET_TEST_KAFKA_CLASSPATH=$(scripts/kafka classpath) \
WAFLEET_FAULT_PEOPLE=${1:-24} WAFLEET_FAULT_BURSTS=${2:-4} WAFLEET_FAULT_BULK=${3:-200} \
WAFLEET_FAULT_BURST_EVERY_MS=${4:-6500} \
  build/bin/cluster_tests --gtest_filter='FaultSuite.*' 2>&1 | grep -E '^fault suite|^    |OK \]|FAILED \]'
