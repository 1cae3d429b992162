#!/usr/bin/env bash
# Fuzzes the callback parser, the decryptor and the whole inbound path with cargo-fuzz
# (libFuzzer + AddressSanitizer). Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]
# 0 seconds replays the committed seeds once (what `make test` does). New corpus entries go
# to fuzz/target/work/, never into the committed fuzz/seeds/.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$ROOT"
seconds=${1:-60}
if ! command -v cargo-fuzz >/dev/null; then
  say "installing cargo-fuzz (about 30 s, once per machine)"
  cargo install -q cargo-fuzz --root "$WXEDGE_CACHE/tools"
fi
# cargo-fuzz needs nightly flags (-Zsanitizer); the stable compiler accepts them with
# RUSTC_BOOTSTRAP, set here only.
export RUSTC_BOOTSTRAP=1
for t in parse_message decrypt open_callback; do
  mkdir -p "fuzz/target/work/$t"
  if [ "$seconds" = 0 ]; then
    say "fuzz seeds: $t"
    log=$(cargo fuzz run -O --fuzz-dir fuzz "$t" "fuzz/seeds/$t" -- -runs=0 2>&1) || { echo "$log" >&2; exit 1; }
    echo "$log" | grep -E "^Done" || true
  else
    say "fuzzing $t for ${seconds}s"
    cargo fuzz run -O --fuzz-dir fuzz "$t" "fuzz/target/work/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$seconds" -max_len=70000 -timeout=5 2>&1 | grep -E "DONE|Done|ERROR|SUMMARY|panicked"
  fi
done
