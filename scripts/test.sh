#!/usr/bin/env bash
# `make test`: set up what is missing, then every suite. Stops at the first failing suite.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"

bash scripts/setup.sh test
say "formatting (cargo fmt --check)"
cargo fmt --all --check
say "lints (cargo clippy -D warnings, every crate of the workspace built natively)"
cargo clippy -q --workspace --all-targets --features wxedge-core/sqlite -- -D warnings
say "native unit tests (core, simulator, widget logic)"
cargo test --features wxedge-core/sqlite   # the shard SQL runs natively over rusqlite
bash scripts/fuzz.sh 0   # the fuzz targets build and every committed seed passes
bash scripts/build.sh all
cargo build -q --release -p wxedge-simulator
say "integration and browser tests (workerd + simulator + Chromium)"
mkdir -p tests/artifacts
export WXEDGE_PYTHON=$PY_VENV/bin/python
node --experimental-websocket --test --test-concurrency=1 --test-reporter=spec tests/
