#!/usr/bin/env bash
# The test command (CI runs it through .ci/run): ONE `pytest --nbval` session on 2 workers (pytest-xdist,
# whole files per worker, the longest files first: conftest.HEAVY_FIRST) holding three steps:
#  1. the unit tests (tests/) and every notebook (notebooks/) on the `smoke` profile, `--nbval` — the
#     user's own flag: each notebook cell is executed and must not raise, so the claim cells
#     (Claims.finish) assert; the notebooks are committed without outputs, so no output is compared
#     (nbval compares only where a cell stores outputs); tests/test_benchmarks.py runs every script in
#     benchmarks/ at its --smoke size, so a refactor that breaks a benchmark fails here;
#  2. the dry run of `full` (profile full_dry, tests/test_step_full_dry.py): all six chapters through the
#     runner on generated files in the real formats, tiny sizes; a failure names the chapter and the cell;
#  3. the browser test (tests/test_step_browser.py): builds the smoke book and its PDF and checks every page
#     in headless Chromium, offline; its report is printed at the end.
# Steps 2 and 3 run only with CCC_TEST_STEPS=1, which this script sets. Each worker runs torch on one thread
# (OMP_NUM_THREADS=1: two workers on two cores). CCC_TEST_WORKERS=N sets the workers (1: no xdist).
# Extra arguments go to pytest. CCC_TEST_SKIP_DRY=1 / CCC_TEST_SKIP_BROWSER=1 skip steps 2 / 3 (pytest
# reports them as skipped, with the reason).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV=${CCC_VENV:-.venv}
PY="$VENV/bin/python"
export CCC_PROGRESS=off MPLBACKEND=Agg CCC_PROFILE=smoke CCC_TEST_STEPS=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
WORKERS=${CCC_TEST_WORKERS:-2}
log=$(mktemp -t ccc-browser-test-XXXXXX.log)
export CCC_TEST_STEP_LOG="$log"
[ -n "${CCC_TEST_SKIP_DRY:-}" ] && echo "== step 2 SKIPPED (CCC_TEST_SKIP_DRY is set): the dry run of full will not run"
[ -n "${CCC_TEST_SKIP_BROWSER:-}" ] && echo "== step 3 SKIPPED (CCC_TEST_SKIP_BROWSER is set): the browser test will not run"

xd=()
[ "$WORKERS" -gt 1 ] && xd=(-n "$WORKERS" --dist loadfile --no-loadscope-reorder)
echo "== pytest --nbval on $WORKERS worker(s): unit tests + notebooks on smoke, the dry run of full, the browser test"
t0=$(date +%s)
status=0
"$PY" -m pytest --nbval "${xd[@]}" tests notebooks -q -rs --durations=25 "$@" || status=$?
echo "== test command: pytest took $(( $(date +%s) - t0 )) s"
if [ -s "$log" ]; then
  echo "== the browser test's report (step 3)"
  grep -E "^(ok|FAIL|PDF|browser test time|all pages pass|[0-9]+ problem)|^  -" "$log" || true
fi
rm -f "$log"
exit "$status"
