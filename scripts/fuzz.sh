#!/usr/bin/env bash
# Fuzzes Herald's decoders (frame parser, broker envelope, JWT verification)
# with the stable-toolchain harness in crates/herald-fuzz.
#
#   scripts/fuzz.sh [INPUTS] [herald-fuzz options...]
#
# INPUTS per target (default 1,000,000). FUZZ_PROFILE=dev uses the debug
# build (what the suite's smoke run does: no release build needed);
# otherwise the release build runs, under nice. A failing input is saved in
# target/fuzz-failures/ and the script exits non-zero; replay it with
#   target/release/herald-fuzz --target T --replay FILE
set -euo pipefail
cd "$(dirname "$0")/.."

inputs="${1:-1000000}"
shift || true
profile="${FUZZ_PROFILE:-release}"

if [[ "$profile" == dev ]]; then
  cargo build --locked -p herald-fuzz
  bin=target/debug/herald-fuzz
else
  nice cargo build --locked --release -p herald-fuzz
  bin=target/release/herald-fuzz
fi
exec nice "$bin" --inputs "$inputs" "$@"
