#!/usr/bin/env bash
# Runs the same benchmark scenarios against socketcluster-server 20, the
# cost floor ws-floor (../shared/reference/ws-floor: a minimal serialize-once
# server of the same protocol) and Herald on this machine, several times each,
# and writes the table of medians and ratios into docs/benchmarks.md (between
# the bench-compare markers).
#
# Usage: scripts/bench-compare.sh [options]
#   --runs N         repetitions of every scenario per server (default 3)
#   --duration D     measured time of each fanout run (default 4s)
#   --warmup D       warm-up of each fanout run (default 1s)
#   --only LIST      comma-separated scenario names to run (default: all):
#                    fanout-100, fanout-1k, fanout-10k, fanout-100x100,
#                    latency-50k, latency-1k, conns, storm, conns-100k
#                    (conns-100k: Herald alone, once, through
#                    scripts/bench-100k.sh: 100,000 sockets over
#                    `herald serve --workers 8` and Redis)
#   --servers LIST   comma-separated servers to run (default: all three):
#                    socketcluster-server, ws-floor, herald
#   --no-build       use the binaries already in target/release
#   --no-doc         print the table, do not touch docs/benchmarks.md
#   --quiet-wait S   before each run wait up to S seconds for the machine to
#                    be idle (default 20; 0 = do not wait)
#   --priority       run everything in a session of its own whose autogroup
#                    has nice -20 (needs root): on a machine shared with other
#                    work, the servers and the load generator get the cores
#                    first (with autogroups on, plain nice only orders the
#                    processes of one session). The results say so.
#
# ws-floor is built from its source (WS_FLOOR_SRC, default
# ../shared/reference/ws-floor beside the project) into target/ws-floor, never
# into the source folder (read-only) nor the repository.
#
# Every server listens on a free port of 127.0.0.1 and is started afresh by
# herald-bench for every run (--server-cmd), so one run's memory or queues do
# not leak into the next. Raw results (one JSON line per run) are kept in
# target/bench/. With the defaults the runs take about 18 minutes (conns
# holds each server 30 s), plus 3 for conns-100k and the release builds.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

RUNS=3
DURATION=4s
WARMUP=1s
BUILD=1
WRITE_DOC=1
QUIET_WAIT=20
ONLY=""
SERVERS="socketcluster-server,ws-floor,herald"
PRIORITY=0
ARGS=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-doc) WRITE_DOC=0; shift ;;
    --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
    --priority) PRIORITY=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\n== %s\n' "$*" >&2; }

PRIORITY_NOTE=""
if [ "$PRIORITY" = 1 ]; then
  if [ -z "${BENCH_COMPARE_PRIORITY:-}" ]; then
    # A new session is a new autogroup; its nice is set from inside it.
    exec env BENCH_COMPARE_PRIORITY=1 setsid --wait bash -c \
      'echo -20 > /proc/self/autogroup || exit 1; exec "$0" "$@"' "$ROOT/scripts/bench-compare.sh" "${ARGS[@]}"
  fi
  PRIORITY_NOTE="; run with \`--priority\` ($(cat /proc/self/autogroup)): other work on the machine yielded the cores"
fi

has_server() { [[ ",$SERVERS," == *",$1,"* ]]; }
for s in ${SERVERS//,/ }; do
  case "$s" in
    socketcluster-server|ws-floor|herald) ;;
    *) echo "unknown server: $s (socketcluster-server, ws-floor, herald)" >&2; exit 2 ;;
  esac
done

# ---- build and check the pieces ----
WS_FLOOR_SRC=${WS_FLOOR_SRC:-$ROOT/../shared/reference/ws-floor}
if [ "$BUILD" = 1 ]; then
  say "building herald and herald-bench (release)"
  cargo build --release -p herald-cli -p herald-bench || exit 1
  if has_server ws-floor; then
    [ -f "$WS_FLOOR_SRC/Cargo.toml" ] || { echo "no ws-floor source at $WS_FLOOR_SRC (set WS_FLOOR_SRC)" >&2; exit 1; }
    say "building ws-floor (release, into target/ws-floor)"
    cargo build --release --manifest-path "$WS_FLOOR_SRC/Cargo.toml" --target-dir "$ROOT/target/ws-floor" || exit 1
  fi
fi
BENCH="$ROOT/target/release/herald-bench"
HERALD="$ROOT/target/release/herald"
FLOOR="$ROOT/target/ws-floor/release/ws-floor"
NEEDED=("$BENCH")
has_server herald && NEEDED+=("$HERALD")
has_server ws-floor && NEEDED+=("$FLOOR")
for b in "${NEEDED[@]}"; do
  [ -x "$b" ] || { echo "missing $b (run without --no-build)" >&2; exit 1; }
done
SC_VERSION=none
if has_server socketcluster-server; then
  command -v node >/dev/null || { echo "node is required for socketcluster-server" >&2; exit 1; }
  SC_VERSION=$(node -e "console.log(require('./tests/node/node_modules/socketcluster-server/package.json').version)" 2>/dev/null)
  SC_PINNED=$(node -e "console.log(require('./tests/node/package.json').dependencies['socketcluster-server'])")
  if [ "$SC_VERSION" != "$SC_PINNED" ]; then
    echo "socketcluster-server $SC_PINNED is not installed (found '${SC_VERSION}'): run 'npm ci --prefix tests/node'" >&2
    exit 1
  fi
fi

HERALD_CMD="$HERALD serve --config bench/herald.toml --listen 127.0.0.1:{port}"
SC_CMD="node $ROOT/bench/sc-server.js {port}"
# ws-floor's defaults: as many runtime threads as cores (Herald's too), a
# queue of 4,096 frames, 4 KiB read buffers, pings every 8 s.
FLOOR_CMD="$FLOOR --port {port}"
server_cmd() {
  case "$1" in
    herald) echo "$HERALD_CMD" ;;
    ws-floor) echo "$FLOOR_CMD" ;;
    socketcluster-server) echo "$SC_CMD" ;;
  esac
}

# name|arguments (the scenario arguments are the same for every server).
# With 1,000 subscribers one generator thread saturates before Herald does,
# so those scenarios run the generator on two threads (it changes nothing for
# socketcluster-server); with 10,000 subscribers one thread is cheaper.
# latency-1k is one publisher to 1,000 subscribers at 50,000 deliveries/s:
# each publication is a burst of 1,000 writes, the last of which waits for
# the others.
SCENARIOS=(
  "fanout-100|fanout -P 1 -C 1 -S 100 --duration $DURATION --warmup $WARMUP"
  "fanout-1k|fanout -P 1 -C 1 -S 1000 --threads 2 --duration $DURATION --warmup $WARMUP"
  "fanout-10k|fanout -P 1 -C 1 -S 10000 --duration $DURATION --warmup $WARMUP"
  "fanout-100x100|fanout -P 100 -C 100 -S 100 --duration $DURATION --warmup $WARMUP"
  "latency-50k|fanout -P 100 -C 100 -S 100 --rate 500 --duration $DURATION --warmup $WARMUP"
  "latency-1k|fanout -P 1 -C 1 -S 1000 --rate 50 --threads 2 --duration $DURATION --warmup $WARMUP"
  "conns|conns -n 10000 --settle 30s"
  "storm|storm -n 10000 --backoff-initial 100ms --backoff-max 2s"
)

# ---- wait until the machine is idle (other builds skew the figures) ----
machine_busy_pct() { # percent of one core busy over 1 s
  local a b
  read -r -a a < /proc/stat; sleep 1; read -r -a b < /proc/stat
  local busy=0 total=0 i
  for i in 1 2 3 4 5 6 7 8; do
    local d=$(( ${b[$i]} - ${a[$i]} ))
    total=$((total + d))
    if [ "$i" != 4 ] && [ "$i" != 5 ]; then busy=$((busy + d)); fi
  done
  [ "$total" -gt 0 ] || total=1
  echo $(( busy * 100 * $(nproc) / total ))
}
wait_quiet() {
  [ "$QUIET_WAIT" -gt 0 ] || return 0
  local waited=0 busy
  while :; do
    busy=$(machine_busy_pct)
    [ "$busy" -lt 15 ] && return 0
    waited=$((waited + 2))
    if [ "$waited" -ge "$QUIET_WAIT" ]; then
      echo "   (machine still ${busy}% busy after ${QUIET_WAIT}s; running anyway)" >&2
      return 0
    fi
    sleep 1
  done
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p target/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS="target/bench/results-$STAMP.jsonl"
LOG="target/bench/log-$STAMP.txt"
: > "$RESULTS"
START=$(date +%s)

selected() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# Arguments a server needs for a scenario beyond the shared ones: ws-floor
# has no auth, so its idle sockets are anonymous (Herald's and
# socketcluster-server's carry a token each: herald-bench gives the servers it
# starts the secret as HERALD_AUTH_SECRET).
server_args() { # label scenario
  if [ "$1" = ws-floor ] && [ "$2" = conns ]; then echo "--no-auth"; fi
}

run_one() { # label cmd args...
  local label=$1 cmd=$2; shift 2
  wait_quiet
  printf '   %-22s %s\n' "$label" "$*" >&2
  local line
  if line=$("$BENCH" "$@" --server-cmd "$cmd" --label "$label" --json --quiet 2>>"$LOG"); then
    echo "$line" >> "$RESULTS"
  else
    echo "   FAILED (see $LOG): $label $*" >&2
    echo "FAILED: $label $*" >> "$LOG"
  fi
}

ORDER=(socketcluster-server ws-floor herald)
for run in $(seq 1 "$RUNS"); do
  for entry in "${SCENARIOS[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    selected "$name" || continue
    say "run $run/$RUNS: $name"
    # Rotate which server goes first so that drift favours none.
    for i in 0 1 2; do
      label=${ORDER[$(( (i + run - 1) % 3 ))]}
      has_server "$label" || continue
      # shellcheck disable=SC2086
      run_one "$label" "$(server_cmd "$label")" $args $(server_args "$label" "$name")
    done
  done
done
# 100,000 sockets: Herald's workers over a broker (the other servers have
# no such mode), once.
HUNDRED_K=""
if selected conns-100k && has_server herald; then
  say "conns-100k: 100,000 sockets over herald serve --workers 8 (Redis)"
  wait_quiet
  if HUNDRED_K=$(scripts/bench-100k.sh --no-build 2>>"$LOG"); then :; else
    echo "   FAILED (see $LOG): conns-100k" >&2
    HUNDRED_K="${HUNDRED_K}
| result | FAILED: a check did not pass (see the log) |"
  fi
fi
ELAPSED=$(( $(date +%s) - START ))

REPORT_ARGS=()
has_server socketcluster-server && REPORT_ARGS+=(--baseline socketcluster-server)
has_server ws-floor && REPORT_ARGS+=(--baseline ws-floor --floor ws-floor)
TABLE=$("$BENCH" report "$RESULTS" "${REPORT_ARGS[@]}" --subject herald) || exit 1

# ---- the results section ----
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- crates bench 2>/dev/null)" ]; then COMMIT="$COMMIT (with uncommitted changes)"; fi
CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
SECTION=$(
  echo "### Latest run"
  echo
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'), $RUNS runs per scenario and server, script time $((ELAPSED / 60)) min $((ELAPSED % 60)) s"
  echo "- Machine: $(nproc) cores ($CPU), $MEM RAM, Linux $(uname -r); server and load generator share the cores; load average before the runs $LOAD_BEFORE$PRIORITY_NOTE"
  PEERS=""
  has_server socketcluster-server && PEERS="$PEERS; socketcluster-server $SC_VERSION on Node.js $(node --version)"
  has_server ws-floor && PEERS="$PEERS; ws-floor from \`../shared/reference/ws-floor\` (\`cargo build --release\`)"
  echo "- Herald: commit $COMMIT, \`cargo build --release\` ($(rustc --version | cut -d' ' -f2))$PEERS"
  echo "- Command: \`scripts/bench-compare.sh --runs $RUNS --duration $DURATION --warmup $WARMUP${ONLY:+ --only $ONLY} --servers $SERVERS$([ "$PRIORITY" = 1 ] && echo ' --priority')\`"
  echo
  echo "$TABLE"
  echo
  echo "Commands run (\`{port}\` is a free port chosen per run; each run is made once per server with"
  echo "\`--server-cmd \"node bench/sc-server.js {port}\" --label socketcluster-server\`,"
  echo "\`--server-cmd \"target/ws-floor/release/ws-floor --port {port}\" --label ws-floor\` and"
  echo "\`--server-cmd \"target/release/herald serve --config bench/herald.toml --listen 127.0.0.1:{port}\" --label herald\`, plus \`--json --quiet\`):"
  echo
  echo '```'
  for entry in "${SCENARIOS[@]}"; do
    selected "${entry%%|*}" && echo "herald-bench ${entry#*|}"
  done
  echo '```'
  echo
  echo "Raw results: \`$RESULTS\` (not committed)."
  if [ -n "$HUNDRED_K" ]; then
    echo
    echo "#### 100,000 sockets across workers"
    echo
    echo "\`scripts/bench-100k.sh --no-build\`: \`herald serve --workers 8 --broker redis://127.0.0.1:6379\` (Redis between the workers), 100,000 authenticated sockets from 20 client processes on loopback source addresses 127.0.0.2–21, each subscribed to one of 100 channels, pings every 8 s, held 60 s, then one publication per channel through the broker:"
    echo
    echo "| | |"
    echo "|---|---|"
    echo "$HUNDRED_K"
  fi
)

if [ "$WRITE_DOC" = 1 ]; then
  DOC=docs/benchmarks.md
  if ! grep -q '<!-- bench-compare:begin -->' "$DOC" 2>/dev/null; then
    echo "$DOC has no <!-- bench-compare:begin --> marker" >&2
    echo "$SECTION"
    exit 1
  fi
  SECTION_FILE=$(mktemp)
  echo "$SECTION" > "$SECTION_FILE"
  awk -v f="$SECTION_FILE" '
    /<!-- bench-compare:begin -->/ { print; while ((getline line < f) > 0) print line; skip = 1; next }
    /<!-- bench-compare:end -->/ { skip = 0 }
    !skip { print }
  ' "$DOC" > "$DOC.tmp" && mv "$DOC.tmp" "$DOC"
  rm -f "$SECTION_FILE"
  say "wrote the results into $DOC (raw: $RESULTS, log: $LOG, $((ELAPSED / 60)) min $((ELAPSED % 60)) s)"
else
  echo "$SECTION"
fi
