#!/bin/bash
# Alternates an old node binary, a new one with tracing off, and the new one with tracing on at
# full sampling (exporting to a local do-nothing OTLP/HTTP receiver), ROUNDS times, in one run
# of the storefront bench (BENCHMARKS.md, "Cost of observability").
#   node/benches/otlp/compare.sh OLD_BIN NEW_BIN [ROUNDS]      (BENCH_ONLY etc. pass through)
set -euo pipefail
old=$1 new=$2 rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../.."
cargo bench -p edgecart-node --bench storefront --no-run
bench=$(ls -t target/release/deps/storefront-* | grep -v '\.d$' | head -1)
python3 "$here/otlp_sink.py" 4318 &
sink=$!
trap 'kill $sink' EXIT
for round in $(seq 1 "$rounds"); do
  echo "=== round $round: old"
  BENCH_NODE_BIN=$old "$bench" --bench
  echo "=== round $round: new, tracing off"
  BENCH_NODE_BIN=$new "$bench" --bench
  echo "=== round $round: new, tracing on"
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_TRACES_SAMPLER=always_on \
    BENCH_NODE_BIN=$new "$bench" --bench
done
