#!/usr/bin/env bash
# Cross-node benchmark: a publisher on node A, 1,000 subscribers on node B,
# through each broker (one Redis, NATS), against the same scenario on a single
# node (in-process broker). Private redis-server and nats-server on free
# loopback ports; every process it starts is stopped by PID at exit.
#
#   scripts/bench-cluster.sh [--runs 3] [--duration 8s] [--no-build] [--no-doc]
#
# Writes the table (medians) into docs/benchmarks.md between the
# bench-cluster markers unless --no-doc.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
duration=8s
build=1
doc=1
while (($#)); do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-doc) doc=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if ((build)); then
  cargo build --release --locked -p herald-cli -p herald-bench
fi
HERALD=target/release/herald
BENCH=target/release/herald-bench
work=$(mktemp -d)
results="$work/results.jsonl"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1" >&2; return 1
}

redis_port=$(free_port)
mkdir -p "$work/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/redis" \
  --logfile "$work/redis.log" &
pids+=($!)
nats_port=$(free_port)
mkdir -p "$work/nats"
(cd "$work/nats" && exec nats-server -a 127.0.0.1 -p "$nats_port" -l "$work/nats.log") &
pids+=($!)
wait_port "$redis_port"
wait_port "$nats_port"

# start_node BROKER -> prints "PID PORT"
start_node() {
  local port
  port=$(free_port)
  "$HERALD" serve --listen "127.0.0.1:$port" --broker "$1" >>"$work/nodes.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_port "$port"
  echo "$pid $port"
}

run_case() { # label broker cross(0/1) rate shape(P C S)
  local label=$1 broker=$2 cross=$3 rate=$4 p=$5 c=$6 s=$7
  for ((i = 1; i <= runs; i++)); do
    read -r pid_b port_b < <(start_node "$broker")
    local extra=()
    if ((cross)); then
      read -r pid_a port_a < <(start_node "$broker")
      extra=(--publish-url "ws://127.0.0.1:$port_a/socketcluster/")
    fi
    "$BENCH" fanout -P "$p" -C "$c" -S "$s" --rate "$rate" --duration "$duration" --warmup 1s \
      --url "ws://127.0.0.1:$port_b/socketcluster/" --server-pid "$pid_b" "${extra[@]}" \
      --label "$label" --json --quiet >>"$results"
    kill "$pid_b" ${pid_a:+"$pid_a"} 2>/dev/null || true
    wait "$pid_b" ${pid_a:+"$pid_a"} 2>/dev/null || true
    unset pid_a port_a
  done
}

# 1 x 1,000 at the maximum rate and at 50,000 deliveries/s (50 publications/s);
# 100 x 100 x 100 at 50,000 deliveries/s (500 publications/s).
for shape in "0 1 1 1000" "50 1 1 1000" "500 100 100 100"; do
  read -r rate p c s <<<"$shape"
  run_case "single node (memory)" memory 0 "$rate" "$p" "$c" "$s"
  run_case "redis" "redis://127.0.0.1:$redis_port" 1 "$rate" "$p" "$c" "$s"
  run_case "nats" "nats://127.0.0.1:$nats_port" 1 "$rate" "$p" "$c" "$s"
done

table=$(python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(xs): return statistics.median(xs) if xs else float('nan')
labels = []
for r in rows:
    if r["label"] not in labels: labels.append(r["label"])
single = med([r["deliveries_per_sec"] for r in rows if r["label"].startswith("single") and r["target_rate"] == 0])
def lat(rs):
    return (med([r["latency"]["p50_ms"] for r in rs]), med([r["latency"]["p99_ms"] for r in rs]),
            med([r["latency"]["p999_ms"] for r in rs]))
out = ["| broker | 1×1,000 deliveries/s (max rate) | ÷ single node | target ≥ 50 % | 1×1,000 at 50,000/s: p50 / p99 / p99.9 ms | 100×100×100 at 50,000/s: p50 / p99 / p99.9 ms | target p99 ≤ 5 ms | lost / dup / reordered |",
       "|---|---:|---:|---|---|---|---|---|"]
for label in labels:
    mine = [r for r in rows if r["label"] == label]
    mx = [r for r in mine if r["target_rate"] == 0]
    f1 = [r for r in mine if r["target_rate"] > 0 and r["subscribers_per_channel"] == 1000]
    f100 = [r for r in mine if r["target_rate"] > 0 and r["subscribers_per_channel"] == 100]
    d = med([r["deliveries_per_sec"] for r in mx])
    a, b = lat(f1), lat(f100)
    bad = sum(r["seq"]["lost"] + r["seq"]["duplicated"] + r["seq"]["reordered"] for r in mine)
    ratio = d / single if single else float('nan')
    t1 = "—" if label.startswith("single") else ("met" if ratio >= 0.5 else "NOT met")
    t2 = ("1×1,000 " + ("met" if a[1] <= 5 else "NOT met") + "; 100×100×100 " + ("met" if b[1] <= 5 else "NOT met"))
    out.append(f"| {label} | {d:,.0f} | {ratio:.2f} | {t1} | {a[0]:.2f} / {a[1]:.2f} / {a[2]:.2f} | {b[0]:.2f} / {b[1]:.2f} / {b[2]:.2f} | {t2} | {bad} |")
print("\n".join(out))
PY
)
echo "$table"

if ((doc)); then
  python3 - "$table" "$runs" "$duration" <<'PY'
import datetime, re, subprocess, sys
table, runs, duration = sys.argv[1], sys.argv[2], sys.argv[3]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
section = (f"<!-- bench-cluster:begin -->\n"
           f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {cpu} (2 cores), "
           f"medians of {runs} runs of {duration}, with `scripts/bench-cluster.sh`. Scenario: "
           f"publishers on node A, subscribers on node B (1 publisher, 1 channel, 1,000 subscribers; "
           f"and 100 publishers, 100 channels, 100 subscribers each), 100-byte payload; "
           f"the single-node row has publishers and subscribers on one node.\n\n{table}\n"
           f"<!-- bench-cluster:end -->")
path = "docs/benchmarks.md"
doc = open(path).read()
if "<!-- bench-cluster:begin -->" in doc:
    doc = re.sub(r"<!-- bench-cluster:begin -->.*?<!-- bench-cluster:end -->", lambda m: section, doc, flags=re.S)
else:
    doc += "\n## Across nodes (issue 4)\n\n" + section + "\n"
open(path, "w").write(doc)
PY
fi
