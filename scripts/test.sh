#!/usr/bin/env bash
# The test command (CI runs it through .ci/run), in three steps:
#  1. `pytest --nbval` — the user's own flag — over the unit tests (tests/) and every notebook
#     (notebooks/) on the `smoke` profile: each notebook cell is executed and must not raise, so the
#     claim cells (Claims.finish) assert; the notebooks are committed without outputs, so no output is
#     compared (nbval compares only where a cell stores outputs); tests/test_benchmarks.py runs every
#     script in benchmarks/ at its --smoke size, so a refactor that breaks a benchmark fails here;
#  2. the dry run of `full` (profile full_dry): all six chapters through the runner on generated files
#     in the real formats, tiny sizes; a failure names the chapter and the cell;
#  3. the browser test: builds the smoke book and checks every page in headless Chromium, offline.
# Extra arguments go to pytest. CCC_TEST_SKIP_DRY=1 / CCC_TEST_SKIP_BROWSER=1 skip steps 2 / 3 (say so).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV=${CCC_VENV:-.venv}
PY="$VENV/bin/python"
export CCC_PROGRESS=off MPLBACKEND=Agg

echo "== 1/3 pytest --nbval (unit tests + notebooks on smoke)"
CCC_PROFILE=smoke "$PY" -m pytest --nbval tests notebooks -q "$@"

if [ -z "${CCC_TEST_SKIP_DRY:-}" ]; then
  echo "== 2/3 dry run of full (full_dry: generated files, not results)"
  out=$(mktemp -d)
  "$PY" -m ccc_lib run all --profile full_dry --out "$out" --root "$PWD"
  rm -rf "$out"
else
  echo "== 2/3 SKIPPED (CCC_TEST_SKIP_DRY is set): the dry run of full did not run"
fi

if [ -z "${CCC_TEST_SKIP_BROWSER:-}" ]; then
  echo "== 3/3 browser test (smoke book, offline Chromium)"
  "$PY" scripts/browser_test.py
else
  echo "== 3/3 SKIPPED (CCC_TEST_SKIP_BROWSER is set): the browser test did not run"
fi
