#!/usr/bin/env bash
# 100,000 sockets on this machine: `herald serve --workers N` over a broker
# (one process may hold at most 20,000 open files here, so the server side
# is several processes, and so is the load: herald-bench conns spreads the
# clients over processes of 5,000, each from its own loopback source
# address, 127.0.0.2, 127.0.0.3, ...).
#
#   scripts/bench-100k.sh [--connections 100000] [--workers 8] [--hold 60s]
#                         [--broker redis://127.0.0.1:6379] [--no-build]
#
# Every socket handshakes and subscribes to one of 100 channels (each channel
# then has subscribers on every worker), the server pings every 8 s, the
# sockets are held idle for --hold, every one must be open at the end, and
# one publication on every channel must reach every socket (through the
# broker, to every worker). Prints the server side's total RSS and CPU
# (the supervisor and all its workers) while idle; exits 3 when a check
# fails. The JSON result line is kept in target/bench-100k.json.
#
# A broker prefix of its own keeps the run apart from anything else on the
# broker. Workers: 8 keeps each under 13,000 sockets (the kernel spreads
# connections over the workers at random, so each needs headroom under the
# 20,000-file limit).
set -euo pipefail
cd "$(dirname "$0")/.."

connections=100000
workers=8
hold=60s
broker=redis://127.0.0.1:6379
build=1
while (($#)); do
  case "$1" in
    --connections) connections="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --hold) hold="$2"; shift 2 ;;
    --broker) broker="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if ((build)); then
  cargo build --release --locked -p herald-cli -p herald-bench
fi
case "$broker" in
  redis://*) spec="$broker?prefix=bench100k-$$:" ;;
  nats://*) spec="$broker?prefix=bench100k_$$" ;;
  *) echo "--broker must be redis:// or nats://" >&2; exit 2 ;;
esac
echo "load before the run: $(uptime)" >&2
SERVER="target/release/herald serve --config bench/herald.toml --listen 127.0.0.1:{port} --workers $workers --broker $spec --ping-interval 8s"
mkdir -p target
set +e
target/release/herald-bench conns --connections "$connections" --channels 100 \
  --per-worker 5000 --connect-concurrency 64 --settle 5s --hold "$hold" \
  --check --check-timeout 120s --server-cmd "$SERVER" --label "herald --workers $workers" \
  --json >target/bench-100k.json
status=$?
set -e
python3 - target/bench-100k.json <<'PY'
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    o = json.loads(line)
    r = o.get("conns", o)
    idle = r.get("server_idle") or {}
    print(f"| sockets | {r['connections']:,} handshaken and subscribed, {r['channels']} channels |")
    print(f"| server processes | {r['server_processes']} (supervisor + workers) |")
    print(f"| client processes | {r['workers']} (one loopback source address each) |")
    print(f"| connected in | {r['connect_s']:.1f} s ({r['connects_per_sec']:,.0f}/s), {r['failed_attempts']} failed attempts |")
    print(f"| held idle | {r['hold_s']:.0f} s, pings every 8 s; {r['alive']:,} open at the end, {r['drops']} drops |")
    print(f"| server RSS, all connected | {r['rss_after_mib']:.0f} MiB in total ({r['kib_per_connection']:.2f} KiB per socket over {r['rss_before_mib']:.0f} MiB idle) |")
    print(f"| server CPU while idle | {idle.get('cpu_avg_pct', 0):.1f} % of one core in total ({idle.get('cpu_secs', 0):.1f} CPU-s over the hold) |")
    check = f"{r['check_s']:.2f} s" if r.get('check_s') is not None else "NOT ALL"
    print(f"| one publication per channel | reached {r['verified']:,} of {r['connections']:,} sockets ({check}) |")
PY
exit "$status"
