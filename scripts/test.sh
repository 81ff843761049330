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

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  # pytest's "no tests collected": a selection with nothing in it is not a failure of the code.
  echo "pytest collected no tests"
  exit 0
fi
exit "$status"
