#!/usr/bin/env bash
# Checks that the checked-in OpenAPI document, openapi/openapi.json, is honest and usable from
# another language, against a running server:
#   fuzz.sh              schemathesis fuzzes every /api operation but the endless /stream: no
#                        5xx, and every status, content type, header and body (problem+json
#                        included) as the spec declares it;
#   stream_check.py      GET /api/stream: a published event's metadata arrives, filtered by
#                        channel, and a missing credential gets the declared problem document;
#   generated_client.py  openapi-python-client generates a client from the spec into a temp
#                        dir, which publishes, follows the event to `delivered`, lists, pages,
#                        reads history, replays and gets the declared errors back.
#
#   COMNESTOR_URL=http://127.0.0.1:6071 COMNESTOR_APP_KEY=ci-key COMNESTOR_APP_SECRET=ci-secret \
#     openapi/check/run.sh
#
# Without COMNESTOR_URL it builds and starts a server of its own (sqlite, a free port). The
# tools (requirements.txt) are installed into a venv under the cache dir the first time and
# whenever requirements.txt changes: "${XDG_CACHE_HOME:-$HOME/.cache}/comnestor/openapi-venv",
# or $OPENAPI_CHECK_VENV. An install failure stops the run; a failed check fails it. Closes
# with `N passed, N failed`, which .ci/test's summary counts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

die() { echo "error: $*" >&2; exit 1; }

# --- the tools -------------------------------------------------------------------------------
venv=${OPENAPI_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/comnestor/openapi-venv}
python=$(command -v python3.11 || command -v python3) || die "no python3 on PATH"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  die "$python is $("$python" --version 2>&1); the generated client needs Python 3.10 or later"
want=$({ cat "$here/requirements.txt"; "$python" --version; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
  echo "installing openapi/check/requirements.txt into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
    -r "$here/requirements.txt"
  "$venv/bin/python" -m pip check
  echo "$want" >"$venv/.installed"
fi
export PATH="$venv/bin:$PATH"

# --- the server ------------------------------------------------------------------------------
server_pid=""
work=$(mktemp -d)
cleanup() {
  status=$?
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    [ "$status" -eq 0 ] || { echo "--- server log"; tail -50 "$work/server.log"; }
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

if [ -z "${COMNESTOR_URL:-}" ]; then
  (cd "$root" && cargo build --quiet --bin comnestor)
  export COMNESTOR_APP_KEY=check-key COMNESTOR_APP_SECRET=check-secret
  COMNESTOR_HOST=127.0.0.1 COMNESTOR_PORT=0 COMNESTOR_LOG=warn \
    COMNESTOR_DATABASE_URL="sqlite://$work/check.db?mode=rwc" \
    COMNESTOR_APP_ID=100 COMNESTOR_APP_INTAKE_RATE=100000 \
    "$root/target/debug/comnestor" serve >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    COMNESTOR_URL=$(sed -n 's/^Comnestor Realtime listening on \(http:[^ ]*\).*/\1/p' "$work/server.log")
    [ -n "$COMNESTOR_URL" ] && break
    kill -0 "$server_pid" 2>/dev/null || die "the server exited: $(cat "$work/server.log")"
    sleep 0.1
  done
  [ -n "$COMNESTOR_URL" ] || die "the server did not announce its address"
  export COMNESTOR_URL
fi
: "${COMNESTOR_APP_KEY:?COMNESTOR_APP_KEY is not set}"
: "${COMNESTOR_APP_SECRET:?COMNESTOR_APP_SECRET is not set}"
echo "checking openapi/openapi.json against $COMNESTOR_URL"

# --- the checks ------------------------------------------------------------------------------
passed=0
failed=0
started=$SECONDS

# fuzz.sh counts as one check; its output is indented so that none of it reads as a summary.
echo "==> schemathesis (fuzz.sh)"
if "$here/fuzz.sh" 2>&1 | sed 's/^/    /'; then
  echo "ok - schemathesis: no 5xx and every answer as the spec declares it"
  passed=$((passed + 1))
else
  echo "not ok - schemathesis: no 5xx and every answer as the spec declares it"
  failed=$((failed + 1))
fi

# The Python checks print `ok - ...` / `not ok - ...` per check.
for script in stream_check.py generated_client.py; do
  echo "==> $script"
  status=0
  "$venv/bin/python" "$here/$script" >"$work/out" 2>&1 || status=$?
  cat "$work/out"
  ok=$(grep -c '^ok - ' "$work/out" || true)
  not_ok=$(grep -c '^not ok - ' "$work/out" || true)
  if [ "$status" -ne 0 ] && [ "$not_ok" -eq 0 ]; then
    echo "not ok - $script exited with $status"
    not_ok=1
  fi
  passed=$((passed + ok))
  failed=$((failed + not_ok))
done

echo "openapi checks took $((SECONDS - started)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
