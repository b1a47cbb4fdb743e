#!/usr/bin/env bash
# Makes sure the engines the test suites talk to are installed and running:
#   - redis-server and redis-cli (tests also start private instances of them),
#     and a Redis on 127.0.0.1:6379;
#   - nats-server, and a NATS with JetStream on 127.0.0.1:4222.
# Installs missing Debian packages with apt and starts a missing service in
# the background. Services that already run (the machine's own) are left as
# they are; tests keep to their own random key and subject prefixes there.
set -euo pipefail

log() { printf '==> %s\n' "$*"; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_listening() {
  for _ in $(seq 1 100); do
    listening "$1" && return 0
    sleep 0.1
  done
  echo "error: nothing listens on 127.0.0.1:$1 after starting $2" >&2
  return 1
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
if ((${#missing[@]})); then
  log "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

state_dir="${TMPDIR:-/tmp}/herald-test-services"
mkdir -p "$state_dir"

if ! listening 6379; then
  log "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$state_dir" --logfile "$state_dir/redis.log"
  wait_listening 6379 redis-server
fi

if ! listening 4222; then
  log "starting nats-server (JetStream) on 127.0.0.1:4222"
  mkdir -p "$state_dir/nats"
  nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$state_dir/nats" \
    -l "$state_dir/nats.log" >/dev/null 2>&1 &
  wait_listening 4222 nats-server
fi
