#!/usr/bin/env bash
# Checks the checked-in OpenAPI document against a running server:
#   1. schemathesis fuzzes every /api operation: no 5xx, and every response matches the spec;
#   2. openapi-python-client generates a client from the spec, which publishes an event and
#      reads its status until it is delivered.
# Installs both from PyPI into a venv under target/ the first time. Fails loudly.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
work="$root/target/openapi-check"
venv="$work/venv"
mkdir -p "$work"
run_dir=$(mktemp -d)
server_pid=""
cleanup() {
  status=$?
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  [ $status -ne 0 ] && [ -f "$run_dir/server.log" ] && { echo "--- server log"; tail -50 "$run_dir/server.log"; }
  rm -rf "$run_dir"
  exit $status
}
trap cleanup EXIT

SCHEMATHESIS_VERSION=4.32.5
GENERATOR_VERSION=0.29.1
if ! "$venv/bin/python" -c "import schemathesis, openapi_python_client" 2>/dev/null; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION and openapi-python-client $GENERATOR_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" "openapi-python-client==$GENERATOR_VERSION"
fi

cargo build -q -p comnestor-server --bin comnestor
key=check-key
secret=check-secret
COMNESTOR_HOST=127.0.0.1 COMNESTOR_PORT=0 COMNESTOR_LOG=warn \
  COMNESTOR_DATABASE_URL="sqlite://$run_dir/check.db?mode=rwc" \
  COMNESTOR_APP_ID=100 COMNESTOR_APP_KEY=$key COMNESTOR_APP_SECRET=$secret \
  COMNESTOR_APP_INTAKE_RATE=100000 \
  target/debug/comnestor serve >"$run_dir/server.log" 2>&1 &
server_pid=$!
url=""
for _ in $(seq 200); do
  url=$(sed -n 's/^Comnestor Realtime listening on \(http:[^ ]*\).*/\1/p' "$run_dir/server.log")
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { echo "error: the server exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "error: the server did not announce its address" >&2; exit 1; }
echo "server at $url"

echo "==> schemathesis"
# The live stream never ends, so it is left out; the Rust tests cover it.
"$venv/bin/schemathesis" run openapi/openapi.json \
  --url "$url/api" \
  --auth "$key:$secret" \
  --exclude-path /stream \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-60}" \
  --seed 1 \
  --no-color

echo "==> openapi-python-client"
PATH="$venv/bin:$PATH" "$venv/bin/openapi-python-client" generate --path openapi/openapi.json \
  --output-path "$run_dir/client" --overwrite >"$run_dir/generate.log" 2>&1 ||
  { cat "$run_dir/generate.log"; echo "error: client generation failed" >&2; exit 1; }
grep -i "warning" "$run_dir/generate.log" && { echo "error: the generator warned about the spec" >&2; exit 1; }
PYTHONPATH="$run_dir/client" COMNESTOR_URL="$url" COMNESTOR_KEY=$key COMNESTOR_SECRET=$secret \
  "$venv/bin/python" openapi/check/client_check.py
echo "openapi checks passed"
