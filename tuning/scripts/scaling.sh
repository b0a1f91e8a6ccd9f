#!/usr/bin/env bash
# Thread-per-core scaling of our depot: RAM-resource throughput and small operations with
# 1, 2, 4, 8 and 16 shards, the transfer striped over one allocation per shard (one
# allocation lives on one core), against the same machine's loopback TCP with the same
# streams. Prints one table per shard count, then a summary; appends every figure to a CSV.
#
#   tuning/scripts/scaling.sh [DIR] [CSV]
#
# DIR holds the spawned depots' data (default /var/tmp/ibp-scaling, removed after each run);
# CSV defaults to DIR.csv. Environment: IBP_BENCH (default target/release/ibp-bench, with
# ibp-depot beside it), CORES (default "1 2 4 8 16"; counts above nproc are skipped), STREAMS
# (client connections, default 16), DURATION_S (per phase, default 3), SIZE (default 1GiB),
# RAM (the RAM resource, default 3GiB). About 40 s per shard count with the defaults.
set -euo pipefail

BENCH=${IBP_BENCH:-target/release/ibp-bench}
DIR=${1:-/var/tmp/ibp-scaling}
CSV=${2:-$DIR.csv}
CORES=${CORES:-1 2 4 8 16}
STREAMS=${STREAMS:-16}
DURATION_S=${DURATION_S:-3}
SIZE=${SIZE:-1GiB}
RAM=${RAM:-3GiB}

[ -x "$BENCH" ] || { echo "no $BENCH: run cargo build --release first" >&2; exit 2; }
mkdir -p "$DIR"
max=$(nproc)
summary=()
for c in $CORES; do
  if [ "$c" -gt "$max" ]; then
    echo "skipping $c shards: this machine has $max cores" >&2
    continue
  fi
  allocs=$(( c < STREAMS ? c : STREAMS ))
  echo "== $c shards, $STREAMS streams, $allocs allocations"
  out=$("$BENCH" run --spawn "$DIR" --cores "$c" --ram "$RAM" --rid 2 --size "$SIZE" \
    --streams "$STREAMS" --allocs "$allocs" --duration-s "$DURATION_S" --small 4KiB \
    --baseline "$DIR" -q --csv "$CSV")
  echo "$out"
  while IFS= read -r line; do
    summary+=("$(printf '%2d shards  %s' "$c" "$line")")
  done < <(echo "$out" | grep -E '^(tcp loopback|store seq|load seq|write rand 4KiB|load rand 4KiB|allocate\+remove)')
done
echo "== summary (MB/s, ops/s and latency columns as in the tables above)"
printf '%s\n' "${summary[@]}"
