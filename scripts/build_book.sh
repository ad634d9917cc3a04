#!/usr/bin/env bash
# Build the book: set up (idempotent), execute every chapter with papermill on a profile
# (default: `default`, or $CCC_PROFILE / first argument), build the HTML with Jupyter Book, and exit
# non-zero when a chapter failed, is missing or ran at another profile (`python -m ccc_lib check`;
# a failed chapter's page shows its partial notebook). A dry run (full_dry) is never built into a book.
# For tests and CI: CCC_SKIP_SETUP=1 uses the environment as it is, CCC_NO_HTML=1 runs and checks
# without building HTML, CCC_NOTEBOOKS=DIR takes the source notebooks from DIR, CCC_EXECUTED=DIR
# writes the executed notebooks there, CCC_PYTHON names the interpreter.
set -uo pipefail
# Every path the caller gives (CCC_EXECUTED, CCC_NOTEBOOKS, CCC_PYTHON, CCC_VENV and the library's own
# CCC_CACHE, CCC_DATA, CCC_DRY_DATA, CCC_METRICS_DIR, CCC_ROOT) means what it meant in the caller's
# working directory: each relative one is made absolute there, before this script moves to the root.
for var in CCC_EXECUTED CCC_NOTEBOOKS CCC_PYTHON CCC_VENV CCC_CACHE CCC_DATA CCC_DRY_DATA CCC_METRICS_DIR CCC_ROOT; do
  val=${!var:-}
  case "$val" in
    ""|/*) ;;
    "~"|"~/"*) export "$var=$HOME${val#\~}" ;;
    *) export "$var=$PWD/$val" ;;
  esac
done
cd "$(dirname "$0")/.."
if [ -z "${CCC_SKIP_SETUP:-}" ]; then scripts/setup.sh || exit 1; fi
PY=${CCC_PYTHON:-${CCC_VENV:-.venv}/bin/python}
PROFILE=${1:-${CCC_PROFILE:-default}}
EXECUTED=${CCC_EXECUTED:-book/executed}
nb=()
if [ -n "${CCC_NOTEBOOKS:-}" ]; then nb=(--notebooks "$CCC_NOTEBOOKS"); fi
status=0
# two chapters side by side where there are 2 cores or more (the cold `default` book's measured setting; chapter 1
# starts first, the report runs last); CCC_CHAPTER_JOBS=1 runs them one after another
JOBS=${CCC_CHAPTER_JOBS:-$( [ "$(nproc 2>/dev/null || echo 1)" -ge 2 ] && echo 2 || echo 1 )}
"$PY" -m ccc_lib run all --root "$PWD" --profile "$PROFILE" --out "$EXECUTED" --jobs "$JOBS" "${nb[@]}" || status=$?
if [ -z "${CCC_NO_HTML:-}" ]; then
  scripts/vendor_assets.sh || exit 1
  "$PY" -m ccc_lib book --root "$PWD" --executed "$EXECUTED" || exit 1
  "$PY" scripts/book_pdf.py --out "$PWD" || exit 1     # _build/html/book.pdf, linked from the intro
fi
"$PY" -m ccc_lib check --root "$PWD" --executed "$EXECUTED" "${nb[@]}" || status=1
if [ $status -ne 0 ]; then
  echo "FAILED: some chapters failed, are missing or ran at another profile (see above); exit $status" >&2
fi
exit $status
