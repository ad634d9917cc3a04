#!/usr/bin/env bash
# The test command: set up (idempotent), then the unit tests and every notebook on the `smoke`
# profile under `pytest --nbval` (each notebook is executed; its claim cells assert).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV=${CCC_VENV:-.venv}
export CCC_PROFILE=${CCC_PROFILE:-smoke} CCC_PROGRESS=off MPLBACKEND=Agg
exec "$VENV/bin/python" -m pytest tests notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -q "$@"
