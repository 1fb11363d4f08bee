#!/usr/bin/env bash
# The unchanged official Python server SDK (PyPI `pusher`, pinned with its dependencies in
# requirements.txt) against a running server's Pusher HTTP API: check_pusher_sdk.py triggers,
# batches, lists channels and users, signs presence and user auth for a `websockets`
# subscriber, terminates a signed-in user's connections, and checks a wrong secret's error.
#
#   COMNESTOR_URL=http://127.0.0.1:6071 COMNESTOR_APP_ID=100 COMNESTOR_APP_KEY=ci-key \
#     COMNESTOR_APP_SECRET=ci-secret conformance/clients/python/run.sh
#
# The packages are installed into a venv under the cache dir the first time and whenever
# requirements.txt or the Python version changes:
# "${XDG_CACHE_HOME:-$HOME/.cache}/comnestor/python-sdk-venv", or $PYTHON_SDK_CHECK_VENV.
# An install failure stops the run; a failed check fails it. Closes with `N passed, N failed`,
# which .ci/test's summary counts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

die() { echo "error: $*" >&2; exit 1; }

: "${COMNESTOR_URL:?COMNESTOR_URL is not set (the server to check, e.g. http://127.0.0.1:6071)}"
: "${COMNESTOR_APP_ID:?COMNESTOR_APP_ID is not set}"
: "${COMNESTOR_APP_KEY:?COMNESTOR_APP_KEY is not set}"
: "${COMNESTOR_APP_SECRET:?COMNESTOR_APP_SECRET is not set}"

venv=${PYTHON_SDK_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/comnestor/python-sdk-venv}
python=$(command -v python3.11 || command -v python3) || die "no python3 on PATH"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
  die "$python is $("$python" --version 2>&1); websockets 15 needs Python 3.9 or later"
want=$({ cat "$here/requirements.txt"; "$python" --version; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
  echo "installing conformance/clients/python/requirements.txt into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv" || die "could not create the venv $venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
    -r "$here/requirements.txt" || die "pip install -r $here/requirements.txt failed"
  "$venv/bin/python" -m pip check || die "pip check failed in $venv"
  echo "$want" >"$venv/.installed"
fi

exec "$venv/bin/python" "$here/check_pusher_sdk.py"
