#!/usr/bin/env bash
# Idempotent set-up: Debian data packages (where apt exists), a virtual environment with ccc_lib and
# everything the book and the tests need. Fast when already done (a stamp keyed by pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${CCC_VENV:-.venv}

# 1. Debian packages: Fashion-MNIST (the `default` profile needs no download) and Chromium (the browser
#    test). `apt-get update` runs first, once, only when something is missing (a fresh machine).
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  pkgs=()
  [ -d /usr/share/datasets/fashion-mnist ] || pkgs+=(dataset-fashion-mnist)
  command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "[setup] installing Debian packages: ${pkgs[*]}"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null; } \
      || echo "[setup] WARNING: could not install ${pkgs[*]}; Fashion-MNIST would need download=True and the browser test Chromium"
  fi
fi

# 2. Python environment.
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.ccc_stamp"
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing ccc_lib and its dependencies into $VENV (first time: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # torch first, within the range pyproject.toml allows (a local build where the machine provides one)
  "$VENV/bin/python" -m pip install -q "torch>=2.1,<=2.14.1" "torchvision>=0.16,<=0.29.1" 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -m pip install -q -e ".[dev,book]" 2>&1 | grep -v "^WARNING: Location" || true
  # chapter 3's deep one-class baselines: deepOD's metadata pins torch<1.13.1, which it does not need on
  # torch 2.x, so it is installed without its dependencies (all of them are installed above)
  "$VENV/bin/python" -m pip install -q --no-deps "deepod>=0.4,<0.5" 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c "import ccc_lib, torch, torchvision, FrEIA, pytorch_ood, pyod, art, papermill, nbval, xdist, jupyter_book, playwright, deepod" \
    || { echo "[setup] ERROR: the environment is incomplete (see pip's output above)"; exit 1; }
  echo "$want" > "$stamp"
fi
echo "[setup] environment ready: $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
