#!/usr/bin/env bash
# `make dev`: set up what is missing, build, and run the whole local stack until Ctrl-C.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
PORT=${PORT:-8787}
SIM_PORT=${SIM_PORT:-8788}

bash scripts/setup.sh dev
bash scripts/build.sh all
cargo build -q --release -p wxedge-simulator
SIM=$ROOT/target/release/wxedge-sim

mkdir -p .wrangler
# The simulator on another port (SIM_PORT) moves the worker's API base with it, unless the
# environment or .dev.vars points the worker somewhere else than this machine.
if [ -z "${WECHAT_API_BASE:-}" ] && grep -Eq '^WECHAT_API_BASE="?http://(127\.0\.0\.1|localhost)' .dev.vars; then
  export WECHAT_API_BASE="http://127.0.0.1:$SIM_PORT"
fi
# Settings: .dev.vars, overridden by any setting exported in this shell. Checked before
# anything starts so a mistake is one line naming the setting.
"$SIM" check-config --env-file .dev.vars --print-env .wrangler/dev.env

pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

# The simulator signs (and in safe mode encrypts) its callbacks with the same settings and
# delivers them to the worker, like WeChat; FOLLOWERS seeds its population. Its state is kept
# beside the worker's (.wrangler/state), so a restart finds both sides as they were; `make reset`
# forgets both.
"$SIM" serve --port "$SIM_PORT" --env-file .wrangler/dev.env \
  --callback-url "http://127.0.0.1:$PORT/wechat" --followers "${FOLLOWERS:-200}" --state .wrangler/state &
pids+=($!)
objects=$(bash scripts/stack-config.sh .wrangler/stack .wrangler/dev.env | tail -n1)
node_modules/.bin/wrangler dev -c wrangler.toml -c "$objects" --ip 127.0.0.1 --port "$PORT" --show-interactive-dev-session=false \
  --env-file .wrangler/dev.env --persist-to .wrangler/state </dev/null &
pids+=($!)

for _ in $(seq 1 120); do
  curl -fs -o /dev/null "http://127.0.0.1:$PORT/api/health" && break
  kill -0 "${pids[1]}" 2>/dev/null || { echo "wrangler exited; see its output above" >&2; exit 1; }
  sleep 0.5
done
cat <<INFO

  wxedge is running (Ctrl-C stops everything)
    site + console    http://127.0.0.1:$PORT/
    widget            http://127.0.0.1:$PORT/widget.js  (+ the /wasm/widget-<hash>.wasm it names)
    WeChat callback   http://127.0.0.1:$PORT/wechat
    health            http://127.0.0.1:$PORT/api/health
    WeChat simulator  http://127.0.0.1:$SIM_PORT/  (WECHAT_API_BASE)
    local state       .wrangler/state/  (worker and simulator; make reset forgets both)

INFO
wait -n "${pids[@]}"
