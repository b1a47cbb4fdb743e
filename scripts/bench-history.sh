#!/usr/bin/env bash
# History benchmark: the same fan-out with and without history, in one run,
# for each history store (the memory broker, Redis Streams, NATS JetStream),
# and the time a client takes to recover 1,000 missed publications.
# Private redis-server and nats-server on free loopback ports; every process
# it starts is stopped by PID at exit.
#
#   scripts/bench-history.sh [--runs 3] [--duration 8s] [--no-build] [--no-doc]
#
# Writes the tables (medians) into docs/benchmarks.md between the
# bench-history markers unless --no-doc.
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
(cd "$work/nats" && exec nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats/store" -l "$work/nats.log") &
pids+=($!)
wait_port "$redis_port"
wait_port "$nats_port"

# Channels `hist:N` keep history; `bench/N` do not.
cat >"$work/herald.toml" <<'EOF'
[namespaces.hist]
history_size = 2000
history_ttl = "10m"
recover = true
EOF

# start_node BROKER -> prints "PID PORT"
start_node() {
  local port
  port=$(free_port)
  "$HERALD" serve --listen "127.0.0.1:$port" --broker "$1" --config "$work/herald.toml" >>"$work/nodes.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_port "$port"
  echo "$pid $port"
}

fanout() { # store broker prefix rate -> one JSON line
  local store=$1 broker=$2 prefix=$3 rate=$4 label
  if [[ $prefix == hist: ]]; then label="$store, history"; else label="$store"; fi
  read -r pid port < <(start_node "$broker")
  "$BENCH" fanout -P 1 -C 1 -S 1000 --rate "$rate" --duration "$duration" --warmup 1s --threads 2 \
    --channel-prefix "$prefix" --url "ws://127.0.0.1:$port/socketcluster/" --server-pid "$pid" \
    --label "$label" --json --quiet >>"$results"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stores=("memory memory" "redis redis://127.0.0.1:$redis_port" "nats nats://127.0.0.1:$nats_port")
# Interleaved: each run measures every store without and with history.
for ((i = 1; i <= runs; i++)); do
  for entry in "${stores[@]}"; do
    read -r store broker <<<"$entry"
    for rate in 0 50; do
      fanout "$store" "$broker" bench/ "$rate"
      fanout "$store" "$broker" hist: "$rate"
    done
  done
done
for entry in "${stores[@]}"; do
  read -r store broker <<<"$entry"
  read -r pid port < <(start_node "$broker")
  "$BENCH" recover --missed 1000 --rounds 20 --channel-prefix hist: \
    --url "ws://127.0.0.1:$port/socketcluster/" --label "$store" --json --quiet >>"$results"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done

tables=$(python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(xs): return statistics.median(xs) if xs else float('nan')
fan = [r for r in rows if r["scenario"] == "fanout"]
rec = [r for r in rows if r["scenario"] == "recover"]
goals = {"memory": 0.80, "redis": 0.50}
out = ["| store | 1×1,000 deliveries/s, no history | with history | ratio | target | p99 ms at 50,000/s, no history / history | lost / dup / reordered |",
       "|---|---:|---:|---:|---|---|---|"]
for store in ["memory", "redis", "nats"]:
    plain = [r for r in fan if r["label"] == store]
    hist = [r for r in fan if r["label"] == f"{store}, history"]
    if not plain or not hist: continue
    dp = med([r["deliveries_per_sec"] for r in plain if r["target_rate"] == 0])
    dh = med([r["deliveries_per_sec"] for r in hist if r["target_rate"] == 0])
    lp = med([r["latency"]["p99_ms"] for r in plain if r["target_rate"] > 0])
    lh = med([r["latency"]["p99_ms"] for r in hist if r["target_rate"] > 0])
    bad = sum(r["seq"]["lost"] + r["seq"]["duplicated"] + r["seq"]["reordered"] + r["misrouted"] for r in plain + hist)
    ratio = dh / dp if dp else float('nan')
    goal = goals.get(store)
    target = f"≥ {goal:.2f}: " + ("met" if ratio >= goal else "NOT met") if goal else "—"
    name = {"memory": "memory (in-process)", "redis": "Redis Streams", "nats": "NATS JetStream"}[store]
    out.append(f"| {name} | {dp:,.0f} | {dh:,.0f} | {ratio:.2f} | {target} | {lp:.2f} / {lh:.2f} | {bad} |")
out += ["", "| store | missed publications | subscribe → recovered reply, median ms | slowest round ms | target < 50 ms | every offset once, in order |",
        "|---|---:|---:|---:|---|---|"]
for r in rec:
    name = {"memory": "memory (in-process)", "redis": "Redis Streams", "nats": "NATS JetStream"}.get(r["label"], r["label"])
    ok = "met" if r["median_ms"] < 50 else "NOT met"
    out.append(f"| {name} | {r['missed']:,} | {r['median_ms']:.2f} | {r['max_ms']:.2f} | {ok} | {'yes' if r['clean'] else 'NO'} |")
print("\n".join(out))
PY
)
echo "$tables"

if ((doc)); then
  python3 - "$tables" "$runs" "$duration" <<'PY'
import datetime, re, subprocess, sys
tables, runs, duration = sys.argv[1], sys.argv[2], sys.argv[3]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
section = (f"<!-- bench-history:begin -->\n"
           f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {cpu} (2 cores), "
           f"medians of {runs} interleaved runs of {duration}, with `scripts/bench-history.sh`. Fan-out: "
           f"1 publisher, 1 channel, 1,000 subscribers, 100-byte payload, on one node through its broker, "
           f"on channels `bench/0` (no history) and `hist:0` (history of 2,000); recovery: 20 rounds of "
           f"1,000 missed publications each.\n\n{tables}\n"
           f"<!-- bench-history:end -->")
path = "docs/benchmarks.md"
doc = open(path).read()
if "<!-- bench-history:begin -->" in doc:
    doc = re.sub(r"<!-- bench-history:begin -->.*?<!-- bench-history:end -->", lambda m: section, doc, flags=re.S)
else:
    doc += "\n## History and recovery (issue 7)\n\n" + section + "\n"
open(path, "w").write(doc)
PY
fi
