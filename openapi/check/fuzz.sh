#!/usr/bin/env bash
# Fuzzes the checked-in openapi/openapi.json with schemathesis against a running server, with
# HTTP Basic. Fails on any 5xx, and on any answer the spec does not declare: an undeclared
# status, content type or header, or a body (problem+json included) that does not match its
# schema; also when the server accepts what the schema forbids, or ignores missing
# credentials. Then fails when rate limiting (429) answered so much that it may have hidden
# the rest, or when an operation never answered with success.
#
#   COMNESTOR_URL=http://127.0.0.1:6071 COMNESTOR_APP_KEY=... COMNESTOR_APP_SECRET=... \
#     openapi/check/fuzz.sh
#
# Expects schemathesis on PATH (run.sh puts its venv first); OPENAPI_FUZZ_EXAMPLES (default 30)
# and OPENAPI_FUZZ_SEED (default 20261203) bound and fix the run; OPENAPI_CHECK_REPORT_DIR, when
# set, keeps the JUnit report and the HAR of every request there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
spec="$here/../openapi.json"
: "${COMNESTOR_URL:?COMNESTOR_URL is not set}"
: "${COMNESTOR_APP_KEY:?COMNESTOR_APP_KEY is not set}"
: "${COMNESTOR_APP_SECRET:?COMNESTOR_APP_SECRET is not set}"

report_dir=${OPENAPI_CHECK_REPORT_DIR:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -n "$report_dir" ] || report_dir="$work/report"
mkdir -p "$report_dir"

# The spec's `servers` entry is `/api`, so the base URL is the server's /api: paths in the spec
# (/events, ...) are relative to it.
#
# GET /stream is left out: it is Server-Sent Events that never end, so every request would
# hang until a timeout, which schemathesis reports as a failure. stream_check.py checks it
# instead (its metadata, its filters, and its problem answers).
#
# Every check but positive_data_acceptance, which is left out: the server checks more than a
# JSON schema says (`channel` or `channels` is required, and together they name at most 100
# channels; the history path's channel must be a valid channel name; unknown fields are
# refused with a 422 naming them, which poem-openapi's schema does not show as
# `additionalProperties: false`), so schema-valid requests are at times, and rightly, answered
# 422. That 422 is itself declared and checked against the problem schema.
checks=not_a_server_error,status_code_conformance,content_type_conformance
checks+=,response_headers_conformance,response_schema_conformance
checks+=,negative_data_rejection,missing_required_header,unsupported_method
checks+=,allow_header_conformance,use_after_free,ensure_resource_availability,ignored_auth

# Run from a scratch directory so nothing (a .hypothesis folder, reports) lands in the tree.
cd "$work"
status=0
schemathesis --no-color run "$spec" \
  --url "${COMNESTOR_URL%/}/api" \
  --auth "$COMNESTOR_APP_KEY:$COMNESTOR_APP_SECRET" \
  --exclude-path /stream \
  --checks "$checks" \
  --max-examples "${OPENAPI_FUZZ_EXAMPLES:-30}" \
  --seed "${OPENAPI_FUZZ_SEED:-20261203}" \
  --generation-database none \
  --request-timeout 10 \
  --workers 1 \
  --report junit,har \
  --report-junit-path "$report_dir/schemathesis.xml" \
  --report-har-path "$report_dir/schemathesis.har" || status=$?
[ "$status" -eq 0 ] || echo "error: schemathesis found problems (exit $status); see above" >&2

# What the fuzzer got back, per operation: it shows that the run reached the handlers rather
# than stopping at 401 or 429.
python3 "$here/har_summary.py" "$report_dir/schemathesis.har" "$spec" || status=1
exit "$status"
