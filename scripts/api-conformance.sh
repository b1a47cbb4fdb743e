#!/usr/bin/env bash
# Checks the HTTP server API against its OpenAPI document with schemathesis
# (PyPI, pinned): starts `herald serve` (the debug build) on a free loopback
# port with an API key and a config that makes every method meaningful
# (channels with history, so publish answers an offset and an epoch, and
# presence), then lets schemathesis generate requests for every operation of
# /api/openapi.json (the document the server serves) and check each
# response: its status is documented, its content type is documented, its
# body fits the documented schema, and it is not a server error other than
# the documented 503; and that the server's validation is the document's
# (requests outside the schema are refused, requests inside it are not
# refused as malformed), the key included.
#
#   scripts/api-conformance.sh
#
# Bounded and repeatable: a fixed seed, a number of examples per operation
# (API_CONFORMANCE_EXAMPLES, default 100) and no example database, so two
# runs send the same requests; the whole run is killed after
# API_CONFORMANCE_TIME seconds (default 150; it takes about 35 s on two
# cores), which fails it. (schemathesis' own --max-time is a budget it
# spends whole, repeating the fuzzing until it is gone: not a bound.)
#
# Installs what it lacks: schemathesis into the venv target/api-venv, with
# python3 (API_CONFORMANCE_PYTHON overrides). Builds target/debug/herald
# unless HERALD_BIN names a binary. The server's log is in
# target/api-conformance/herald.log; a failing case prints a curl command
# that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
SEED="${API_CONFORMANCE_SEED:-20260110}"
EXAMPLES="${API_CONFORMANCE_EXAMPLES:-100}"
TIME_LIMIT="${API_CONFORMANCE_TIME:-150}"
KEY="api-conformance-key"
# Every response: a documented status and content type, a body and headers
# that fit the document, no server error; requests that break the schema
# are refused (4xx), requests that fit it are not refused as malformed
# (400); without the key, 401; another HTTP method, 405.
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance
CHECKS+=,response_schema_conformance,response_headers_conformance
CHECKS+=,negative_data_rejection,positive_data_acceptance
CHECKS+=,missing_required_header,ignored_auth,unsupported_method

log() { printf '==> %s\n' "$*"; }

venv="$PWD/target/api-venv"
st="$venv/bin/schemathesis"
if ! [[ -x "$st" ]] || [[ "$("$st" --version 2>/dev/null)" != *" $SCHEMATHESIS_VERSION" ]]; then
  py="${API_CONFORMANCE_PYTHON:-python3}"
  log "installing schemathesis $SCHEMATHESIS_VERSION into $venv ($("$py" --version 2>&1))"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
    "schemathesis==$SCHEMATHESIS_VERSION"
fi

bin="${HERALD_BIN:-}"
if [[ -z "$bin" ]]; then
  log "building herald (debug)"
  cargo build --locked -p herald-cli --bin herald
  bin=target/debug/herald
fi

work="$PWD/target/api-conformance"
rm -rf "$work"
mkdir -p "$work"

# Every channel has history and presence (schemathesis' generated names
# fall in [channels]), and so has the namespace chat: of the document's
# examples.
cat >"$work/herald.toml" <<EOF
listen = "127.0.0.1:0"
api_key = "$KEY"

[channels]
history_size = 100
presence = true

[namespaces.chat]
history_size = 100
presence = true
EOF

cat >"$work/schemathesis.toml" <<'EOF'
# 503 (broker_unavailable) is a documented answer, not a server error.
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]
# A request that fits the schema may still name a value the server refuses
# (422: a channel of no namespace, without history, a position of another
# epoch); what it must never get is 400, which says the params do not fit.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "422"]
EOF

out="$work/herald.log"
"$bin" serve --config "$work/herald.toml" >"$out" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap cleanup EXIT

addr=""
for _ in $(seq 1 200); do
  addr="$(sed -n 's|^herald listening on ws://\([^/]*\)/.*$|\1|p' "$out")"
  [[ -n "$addr" ]] && break
  kill -0 "$pid" 2>/dev/null || { echo "herald exited:" >&2; cat "$out" >&2; exit 1; }
  sleep 0.05
done
[[ -n "$addr" ]] || { echo "herald did not start within 10 s:" >&2; cat "$out" >&2; exit 1; }
log "herald on http://$addr; schemathesis $SCHEMATHESIS_VERSION, seed $SEED, $EXAMPLES examples per operation"

status=0
# From $work, where schemathesis keeps its store of failing cases (fresh on
# each run, so that none is replayed).
(cd "$work" && timeout --kill-after=10 "$TIME_LIMIT" \
  "$st" --config-file "$work/schemathesis.toml" run "http://$addr/api/openapi.json" \
  --header "X-API-Key: $KEY" \
  --checks "$CHECKS" \
  --phases examples,coverage,fuzzing \
  --max-examples "$EXAMPLES" \
  --seed "$SEED" \
  --generation-database none \
  --workers 1 \
  --request-timeout 10 \
  --no-color) || status=$?

if ((status == 124 || status == 137)); then
  echo "api-conformance: schemathesis did not finish within $TIME_LIMIT s" >&2
fi
if ((status != 0)); then
  echo "api-conformance: failed (the server's log: $out)" >&2
  exit "$status"
fi
log "the API conforms to its OpenAPI document"
