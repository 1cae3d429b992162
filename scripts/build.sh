#!/usr/bin/env bash
# Builds the deployable pieces. Usage: scripts/build.sh [worker|widget|site|all] [--sizes]
#   worker: worker/build/ (wasm + JS shim, what wrangler deploys)
#   widget: dist/widget/ (widget.js + widget_bg.wasm)
#   site:   dist/site/ = www/ + the widget, served by the worker as static assets
# Each step is skipped when its output is newer than its inputs, so wrangler's own build hook
# (which runs this) costs nothing after `make build`.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
what=${1:-all}

newer_than() { # newer_than OUTPUT INPUT...: true when OUTPUT exists and no INPUT file is newer
  [ -e "$1" ] || return 1
  local out=$1; shift
  [ -z "$(find "$@" -newer "$out" -type f 2>/dev/null | head -n1)" ]
}

build_worker() {
  # The stamp is written last: a build stopped part-way (wrangler restarted, Ctrl-C) leaves none,
  # so the next run builds again instead of serving an unoptimised wasm.
  if newer_than worker/build/.built core worker/src worker/Cargo.toml Cargo.toml Cargo.lock scripts/build.sh; then return; fi
  rm -f worker/build/.built
  wasm_toolchain
  # Two scripts from the one crate (worker/src/lib.rs): the front worker and the Durable Object
  # classes, each carrying only its own code.
  build_script objects build-objects
  build_script front build
  touch worker/build/.built
}

build_script() { # build_script FEATURE OUT_DIR (under worker/)
  say "building worker script '$1' ($WASM_RUST toolchain)"
  # Every crate at opt-level z in the worker's wasm (a request runs each path once; size is what
  # costs: startup and the 1 MB free-plan limit). Native builds and benchmarks keep the profile's.
  # With Debian's toolchain std is built here too, so panics can abort at once: no panic messages
  # or locations in the wasm (a panic was already fatal to its request; the code has no panic
  # path on input, see fuzz/). rustup's prebuilt std cannot do that.
  local rustflags=""
  [ "$WASM_RUST" = debian ] && rustflags="-Zunstable-options -Cpanic=immediate-abort"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z RUSTFLAGS="$rustflags" worker-build --release --out-dir "$2" worker \
    --no-default-features --features "$1" "${WASM_CARGO_FLAGS[@]}"
  # worker-build leaves the name section and does not optimise for size: a third smaller.
  wasm-opt -Oz --strip-debug --strip-producers --enable-bulk-memory --enable-mutable-globals --enable-sign-ext \
    --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue --enable-exception-handling \
    "worker/$2/index_bg.wasm" -o "worker/$2/index_bg.opt.wasm"
  mv "worker/$2/index_bg.opt.wasm" "worker/$2/index_bg.wasm"
}

build_widget() {
  if newer_than dist/widget/widget.js widget core Cargo.toml Cargo.lock scripts/build.sh; then return; fi
  wasm_toolchain
  say "building widget ($WASM_RUST toolchain)"
  # As the worker: every crate at opt-level z and, with Debian's build-std route, panics that
  # abort at once (no panic strings or formatting in what every visitor downloads).
  local rustflags=""
  [ "$WASM_RUST" = debian ] && rustflags="-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Zfmt-debug=none"
  local stdfeat=""; [ "$WASM_RUST" = debian ] && stdfeat="-Zbuild-std-features=optimize_for_size"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z RUSTFLAGS="$rustflags" cargo build --release -p wxedge-widget --lib --target wasm32-unknown-unknown "${WASM_CARGO_FLAGS[@]}" $stdfeat
  rm -rf dist/widget-pkg && mkdir -p dist/widget
  "$WASM_BINDGEN_BIN" --target web --no-typescript --out-dir dist/widget-pkg --out-name widget \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/wxedge_widget.wasm"
  echo '{"type": "module"}' > dist/widget-pkg/package.json # the glue is ESM (make bench loads it in node)
  # Import and export names shortened (a map on stdout, applied to the glue): wasm-bindgen's are
  # long and hashed, written twice, and do not compress.
  wasm-opt -Oz --minify-imports-and-exports-and-modules --enable-mutable-globals --enable-sign-ext \
    --enable-nontrapping-float-to-int --enable-bulk-memory --enable-multivalue --enable-reference-types \
    dist/widget-pkg/widget_bg.wasm -o dist/widget/widget_bg.wasm > dist/widget-pkg/names.json
  node scripts/short-wasm-names.mjs dist/widget-pkg/names.json dist/widget-pkg/widget.js dist/widget/widget_bg.wasm
  # Versioned: the loader asks for wasm/widget-<content hash>.wasm, served immutable (a year), so
  # a visitor's browser fetches it once per release; widget.js itself is short-cached (5 min) and
  # names the current one. widget_bg.wasm stays for what pinned the old name.
  local hash
  hash=$(sha256sum dist/widget/widget_bg.wasm | cut -c1-16)
  rm -rf dist/widget/wasm && mkdir -p dist/widget/wasm
  cp dist/widget/widget_bg.wasm "dist/widget/wasm/widget-$hash.wasm"
  # One classic script: the loader plus wasm-bindgen's glue, as an IIFE.
  esbuild widget/loader.js --bundle --minify --format=iife --target=es2019 --define:WXEDGE_WASM="\"wasm/widget-$hash.wasm\"" \
    --alias:wasm-glue=./dist/widget-pkg/widget.js --outfile=dist/widget/widget.js --log-level=warning --log-override:empty-import-meta=silent
}

build_site() {
  build_widget
  rm -rf dist/site.tmp && mkdir -p dist/site.tmp
  cp -R www/. dist/site.tmp/
  # The demo pages share parts (head links, header and nav; the simulator panel): a line
  # `<!--#include _part.html-->` is replaced by www/_part.html without its leading comment.
  for page in dist/site.tmp/*.html; do
    awk 'match($0, /^<!--#include _[a-z]+\.html-->$/) { f = "www/" substr($0, 14, RLENGTH - 16); while ((getline line < f) > 0) if (line !~ /^<!-- /) print line; close(f); next } { print }' \
      "$page" > "$page.tmp" && mv "$page.tmp" "$page"
  done
  rm -f dist/site.tmp/_*.html
  cp -R dist/widget/widget.js dist/widget/widget_bg.wasm dist/widget/wasm dist/site.tmp/
  rm -rf dist/site && mv dist/site.tmp dist/site
}

sizes() {
  for f in worker/build/index_bg.wasm worker/build/index.js worker/build-objects/index_bg.wasm worker/build-objects/index.js dist/widget/widget_bg.wasm dist/widget/widget.js; do
    [ -f "$f" ] && printf '%-32s %8d bytes raw %8d bytes gzip\n' "$f" "$(wc -c <"$f")" "$(gzip -9c "$f" | wc -c)"
  done
  return 0
}

case "$what" in
  worker) build_worker ;;
  widget) build_widget ;;
  site) build_site ;;
  all) build_worker; build_site ;;
  *) echo "usage: $0 [worker|widget|site|all] [--sizes]" >&2; exit 2 ;;
esac
[ "${2:-}" = --sizes ] && sizes
exit 0
