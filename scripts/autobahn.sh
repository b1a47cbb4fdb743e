#!/usr/bin/env bash
# Runs the Autobahn WebSocket conformance suite (fuzzingclient) against
# Herald's WebSocket layer through the test-only echo endpoint
# (herald-testkit's herald-echo: herald::echo_router, the same upgrade
# checks, codec and limits as every Herald socket).
#
#   scripts/autobahn.sh [full|quick]
#
# full (default): every case, 1.* to 13.*, on the release build.
# quick: cases 1.* to 10.* without 9.* (the performance cases), on the debug
#   build.
# AUTOBAHN_PROFILE=dev|release overrides the build (scripts/test.sh runs the
# full set on the debug build the suite has already built).
#
# Installs what it lacks: autobahntestsuite from PyPI into
# target/autobahn/site, for a Python 2.7 (AUTOBAHN_PYTHON, else pyenv's
# 2.7.x, else python2.7 on the PATH). Fails on any case whose behaviour (or
# close behaviour) is not OK, NON-STRICT or INFORMATIONAL; the 12.* and 13.*
# cases (permessage-deflate) may be UNIMPLEMENTED: Herald does not offer
# compression (its codec declines permessage-deflate), and Autobahn reports
# that so.
# The report is in target/autobahn/reports/index.html; the summary it
# prints goes in docs/autobahn.md.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-full}"
case "$mode" in
  full | quick) ;;
  *) echo "usage: $0 [full|quick]" >&2; exit 2 ;;
esac

log() { printf '==> %s\n' "$*"; }

py="${AUTOBAHN_PYTHON:-}"
if [[ -z "$py" ]]; then
  for candidate in "$HOME"/.pyenv/versions/2.7*/bin/python "$(command -v python2.7 || true)"; do
    if [[ -n "$candidate" && -x "$candidate" ]]; then py="$candidate"; break; fi
  done
fi
if [[ -z "$py" ]]; then
  echo "autobahn: no Python 2.7 found (set AUTOBAHN_PYTHON, or install one with pyenv)" >&2
  exit 1
fi

root="$PWD/target/autobahn"
site="$root/site"
mkdir -p "$root"
if ! "$py" -c "import site; site.addsitedir('$site'); import autobahntestsuite" 2>/dev/null; then
  log "installing autobahntestsuite for $("$py" --version 2>&1) into $site"
  "$py" -m pip install --disable-pip-version-check --quiet --target "$site" autobahntestsuite
fi

profile="${AUTOBAHN_PROFILE:-$([[ "$mode" == full ]] && echo release || echo dev)}"
if [[ "$profile" == release ]]; then
  log "building herald-echo (release)"
  nice cargo build --locked --release -p herald-testkit --bin herald-echo
  echo_bin=target/release/herald-echo
else
  log "building herald-echo (debug)"
  cargo build --locked -p herald-testkit --bin herald-echo
  echo_bin=target/debug/herald-echo
fi

out="$root/echo.out"
"$echo_bin" --listen 127.0.0.1:0 --path / >"$out" 2>&1 &
echo_pid=$!
cleanup() { kill "$echo_pid" 2>/dev/null || true; wait "$echo_pid" 2>/dev/null || true; }
trap cleanup EXIT
url=""
for _ in $(seq 1 200); do
  url="$(sed -n 's/^herald-echo listening on \(ws:\/\/[^ ]*\)$/\1/p' "$out")"
  [[ -n "$url" ]] && break
  kill -0 "$echo_pid" 2>/dev/null || { cat "$out" >&2; exit 1; }
  sleep 0.05
done
[[ -n "$url" ]] || { echo "herald-echo did not start" >&2; cat "$out" >&2; exit 1; }
log "herald-echo on $url"

reports="$root/reports"
rm -rf "$reports"
if [[ "$mode" == full ]]; then
  cases='["*"]'
else
  cases='["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "10.*"]'
fi
version="$(cargo pkgid -p herald | sed 's/.*[#@]//')"
cat >"$root/fuzzingclient.json" <<JSON
{
  "outdir": "$reports",
  "options": {"failByDrop": true},
  "servers": [{"agent": "herald-$version", "url": "$url"}],
  "cases": $cases,
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON

log "wstest fuzzingclient ($mode)"
start=$(date +%s)
(cd "$root" && "$py" -c "
import site, sys
site.addsitedir('$site')
sys.argv = ['wstest', '-m', 'fuzzingclient', '-s', 'fuzzingclient.json']
from autobahntestsuite.wstest import run
run()
" >"$root/wstest.log" 2>&1) || { tail -30 "$root/wstest.log" >&2; exit 1; }
elapsed=$(($(date +%s) - start))

PROFILE="$profile" python3 - "$reports/index.json" "$mode" "$elapsed" "$("$py" --version 2>&1)" "$site" <<'PY'
import collections, json, os, re, sys, datetime

index, mode, elapsed, python, site = sys.argv[1:6]
with open(index) as f:
    results = json.load(f)
allowed = {"OK", "NON-STRICT", "INFORMATIONAL"}
by_group = collections.defaultdict(collections.Counter)
totals = collections.Counter()
bad = []
for agent, cases in results.items():
    for case, r in cases.items():
        group = case.split(".")[0]
        behaviour, close = r["behavior"], r["behaviorClose"]
        ok_here = allowed | ({"UNIMPLEMENTED"} if group in ("12", "13") else set())
        by_group[group][behaviour] += 1
        totals[behaviour] += 1
        if behaviour not in ok_here or close not in ok_here:
            bad.append((case, behaviour, close))

def key(g):
    return int(g)

version = "?"
for d in os.listdir(site):
    m = re.match(r"autobahntestsuite-(.+)\.dist-info$", d) or re.match(r"autobahntestsuite-(.+?)-py", d)
    if m:
        version = m.group(1)
names = sorted(totals)
print()
print("Autobahn fuzzingclient, %s run, %s UTC, %d cases in %s s; autobahntestsuite %s on %s" % (
    mode + " (" + os.environ.get("PROFILE", "?") + " build)", datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), sum(totals.values()), elapsed, version, python))
print()
print("| group | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
for g in sorted(by_group, key=key):
    print("| %s | " % g + " | ".join(str(by_group[g].get(n, 0)) for n in names) + " |")
print("| all | " + " | ".join(str(totals[n]) for n in names) + " |")
print()
if bad:
    print("FAILED cases (behaviour, close behaviour):")
    for case, b, c in sorted(bad, key=lambda x: [int(p) for p in x[0].split(".")]):
        print("  %s: %s, %s" % (case, b, c))
    sys.exit(1)
print("every case OK, NON-STRICT or INFORMATIONAL (12.*/13.*: UNIMPLEMENTED, no compression)")
PY
