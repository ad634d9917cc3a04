#!/usr/bin/env bash
# Fetch the book's front-end assets from the npm registry and place them under book/_static/vendor/,
# so that the built site needs no CDN: MathJax 3 (equations), RequireJS and the ipywidgets
# html-manager (saved slider states). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=book/_static/vendor
stamp="$dest/.stamp"
want="mathjax@3.2.2 requirejs@2.3.8 @jupyter-widgets/html-manager@1.0.15"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "[vendor] ERROR: npm is needed to fetch MathJax and the ipywidgets html-manager (install Node.js)"; exit 1
  fi
fi
work=build/npm
mkdir -p "$work"
echo "[vendor] npm install $want"
npm install --silent --no-audit --no-fund --prefix "$work" $want >/dev/null 2>&1 || npm install --no-audit --no-fund --prefix "$work" $want
rm -rf "$dest"; mkdir -p "$dest/mathjax" "$dest/html-manager"
cp -r "$work/node_modules/mathjax/es5" "$dest/mathjax/"
cp "$work/node_modules/requirejs/require.js" "$dest/require.min.js"
cp -r "$work/node_modules/@jupyter-widgets/html-manager/dist/." "$dest/html-manager/"
echo "$want" > "$stamp"
echo "[vendor] assets in $dest"
