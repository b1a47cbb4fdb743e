#!/usr/bin/env bash
# Slow-consumer benchmark: the same fan-out with and without 10 % slow
# readers, interleaved in one run, comparing the healthy subscribers'
# publish-to-delivery latency (p50, p99) and throughput. The slow readers
# (herald-bench fanout --slow-readers, crate::slow) sit on a 4 KiB receive
# buffer and read one message per --slow-pause, so the server's queue for
# them fills, they are closed with 4100 and they come back, all run long.
#
#   scripts/bench-slow-readers.sh [--runs 3] [--duration 20s] [--no-build]
#
# Fixed publication rate (the same load in both variants, so the latency
# compares like with like). Prints a Markdown table of the medians.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
duration=20s
build=1
while (($#)); do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if ((build)); then
  cargo build --release --locked -p herald-cli -p herald-bench
fi
BENCH=target/release/herald-bench
SERVER="target/release/herald serve --config bench/herald.toml --listen 127.0.0.1:{port}"
# 1 publisher per channel, 10 channels x 100 subscribers, 8 KB publications
# at 500/s in all: 50,000 deliveries/s (400 MB/s) to the healthy ones, a
# load this 2-core machine carries with CPU to spare (latency is noise on a
# saturated machine). Each slow reader gets 50 publications/s and reads 2:
# its queue passes the 4 MiB bound after about 11 s, so a 20 s run sees the
# policy at work.
common=(fanout -P 10 -C 10 -S 100 --payload 8000 --rate 500 --duration "$duration" --warmup 2s --threads 2 --json --quiet)
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for i in $(seq 1 "$runs"); do
  for variant in none slow; do
    extra=()
    [ "$variant" = slow ] && extra=(--slow-readers 0.1 --slow-pause 500ms)
    echo "run $i/$runs: $variant" >&2
    "$BENCH" "${common[@]}" "${extra[@]}" --server-cmd "$SERVER" --label "$variant" >>"$results"
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    o = json.loads(line)
    r = o.get("fanout", o)
    rows.setdefault(r["label"], []).append(r)
def med(rs, f):
    return statistics.median(f(r) for r in rs)
base = rows["none"]
print("| variant | runs | deliveries/s | p50 ms | p99 ms | p99 vs none | lost/dup | slow readers | slow-reader disconnections |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
p99_base = med(base, lambda r: r["latency"]["p99_ms"])
for label in ("none", "slow"):
    rs = rows[label]
    p99 = med(rs, lambda r: r["latency"]["p99_ms"])
    lost = sum(r["seq"]["lost"] + r["seq"]["duplicated"] for r in rs)
    slow = [r.get("slow") or {} for r in rs]
    closes = sum(x.get("slow_consumer_closes", 0) + x.get("other_ends", 0) for x in slow)
    readers = max((x.get("readers", 0) for x in slow), default=0)
    print(f"| {label} | {len(rs)} | {med(rs, lambda r: r['deliveries_per_sec']):,.0f} | "
          f"{med(rs, lambda r: r['latency']['p50_ms']):.2f} | {p99:.2f} | {p99 / p99_base:.2f} | {lost} | {readers} | {closes} |")
PY
