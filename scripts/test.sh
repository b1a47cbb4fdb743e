#!/usr/bin/env bash
# Runs Herald's whole test suite on a fresh machine, installing what it lacks:
# Debian packages (Node.js, redis-server, nats-server) and the services the
# broker tests use (scripts/services.sh), the pinned npm packages (npm ci), then formatting,
# lints, the Rust suites (unit, integration, doc tests) and the compatibility
# suite driven by the official socketcluster-client, the example backend in
# Python (examples/backend-python), and the TypeScript
# client's suites (clients/ts). Nothing is skipped: a
# missing tool is installed or the run fails.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

apt_missing=()
command -v node >/dev/null 2>&1 || apt_missing+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_missing+=(npm)
# The TypeScript client's browser tests drive Debian's chromium with
# playwright-core (browsers cannot be downloaded).
[ -x /usr/bin/chromium ] || apt_missing+=(chromium)
if ((${#apt_missing[@]})); then
  log "installing ${apt_missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${apt_missing[@]}"
fi
if ! command -v cargo-nextest >/dev/null 2>&1 && ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

log "services: Redis and NATS (installed and started when missing)"
scripts/services.sh

log "npm ci (tests/node)"
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "building binaries used by the suites"
cargo build --workspace --bins --locked

log "Rust tests (nextest)"
cargo nextest run --workspace --locked --no-fail-fast

log "fuzz smoke: 20,000 inputs per target (scripts/fuzz.sh; long runs in docs/benchmarks.md)"
FUZZ_PROFILE=dev scripts/fuzz.sh 20000 --seed "${HERALD_FUZZ_SEED:-1}" --progress 0

log "Autobahn WebSocket suite, every case, on the debug build (scripts/autobahn.sh; summary in docs/autobahn.md)"
AUTOBAHN_PROFILE=dev scripts/autobahn.sh full

log "example backend in Python (examples/backend-python, scripts/example-backend.sh): app.py against herald serve"
scripts/example-backend.sh

log "doc tests"
cargo test --workspace --doc --locked

log "compatibility suite: official socketcluster-client against herald serve"
(cd tests/node && npm test)

log "HTTP API against its OpenAPI document: schemathesis on herald serve (scripts/api-conformance.sh)"
HERALD_BIN=target/debug/herald scripts/api-conformance.sh

log "TypeScript client (clients/ts): npm ci, typecheck, build, demo bundle up to date, unit, Node and browser tests"
(cd clients/ts && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error &&
  npm run typecheck && npm run build && npm run check:demo &&
  npm run test:unit && npm run test:node && npm run test:browser)

log "all suites passed"
