#!/usr/bin/env bash
# Installs whatever is missing and nothing else; a second run takes about a second.
# Usage: scripts/setup.sh [dev|test|bench]   (test adds Chromium and the Python peers)
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
want=${1:-dev}
SCHEMATHESIS_VERSION=4.32.5

apt_pkgs=(rustc-web cargo-web rust-web-src lld-19)
# Chromium for the browser tests, with a CJK font so screenshots of Chinese text are legible.
[ "$want" = dev ] || apt_pkgs+=(chromium chromium-driver fonts-wqy-microhei)
[ "$want" = bench ] && apt_pkgs+=(wrk)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (wrangler, binaryen, playwright-core)"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ "$("$TOOLS_BIN/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 3 minutes, once per machine)"
  cargo install -q wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --root "$WXEDGE_CACHE/tools" --force
fi
if [ "$("$TOOLS_BIN/worker-build" --version 2>/dev/null)" != "$WORKER_BUILD_VERSION" ]; then
  say "installing worker-build $WORKER_BUILD_VERSION (about 3 minutes, once per machine)"
  cargo install -q worker-build --version "$WORKER_BUILD_VERSION" --locked --root "$WXEDGE_CACHE/tools" --force
fi

if [ "$want" != dev ]; then
  if ! "$PY_VENV/bin/python" -c 'import wechatpy, cryptography' 2>/dev/null; then
    say "installing the Python peer (wechatpy) into $PY_VENV"
    python3 -m venv "$PY_VENV"
    "$PY_VENV/bin/pip" install -q wechatpy==1.8.18 cryptography
  fi
  # PyJWT verifies the follow-to-log-in tokens as a site's python backend would.
  if ! "$PY_VENV/bin/python" -c 'import jwt' 2>/dev/null; then
    say "installing PyJWT into $PY_VENV"
    "$PY_VENV/bin/pip" install -q "PyJWT[crypto]==2.10.1"
  fi
  if [ "$("$PY_VENV/bin/st" --version 2>/dev/null)" != "st, version $SCHEMATHESIS_VERSION" ]; then
    say "installing schemathesis $SCHEMATHESIS_VERSION into $PY_VENV"
    "$PY_VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
  fi
fi

[ -f .dev.vars ] || { cp .dev.vars.example .dev.vars; say "created .dev.vars from .dev.vars.example"; }
