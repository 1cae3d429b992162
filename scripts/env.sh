# Sourced by every script: where tools live and which toolchain builds wasm.
# Tools go to a per-user cache outside the checkout, so a fresh clone on the same machine
# reuses them (a cold install of wasm-bindgen-cli + worker-build takes about 8 minutes).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WXEDGE_CACHE=${WXEDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wxedge}
TOOLS_BIN=$WXEDGE_CACHE/tools/bin
WASM_BINDGEN_VERSION=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' "$ROOT/Cargo.toml")
WORKER_BUILD_VERSION=0.8.7
export PATH="$TOOLS_BIN:$ROOT/node_modules/.bin:$PATH"
export WASM_BINDGEN_BIN=$TOOLS_BIN/wasm-bindgen
export WASM_OPT_BIN=$ROOT/node_modules/.bin/wasm-opt
export ESBUILD_BIN=$ROOT/node_modules/.bin/esbuild
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
PY_VENV=$WXEDGE_CACHE/venv

# Prefer an installed rustup wasm32 target (about twice as fast cold); otherwise Debian's
# rustc-web with build-std. Never ask rustup to download anything.
wasm_toolchain() {
  if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    WASM_RUST=rustup
    WASM_CARGO_FLAGS=()
  else
    WASM_RUST=debian
    local shim=$WXEDGE_CACHE/debian-rust/bin
    mkdir -p "$shim"
    for t in cargo rustc rustdoc; do ln -sf "/usr/bin/$t" "$shim/$t"; done
    export PATH="$shim:$PATH"
    export RUSTC_BOOTSTRAP=1
    WASM_CARGO_FLAGS=(-Z build-std=std,panic_abort)
    # worker-build insists the target's libdir exists; with build-std it is empty.
    mkdir -p "$(rustc --print target-libdir --target wasm32-unknown-unknown 2>/dev/null)" 2>/dev/null || true
  fi
  # Separate from the host target dir: the two compilers would otherwise rebuild each
  # other's proc-macros on every switch.
  export CARGO_TARGET_DIR=$ROOT/target/wasm
}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
