#!/usr/bin/env bash
# Usage: scripts/objects-config.sh DIR ENV_FILE — writes DIR/wrangler.toml (wrangler.objects.toml
# with an absolute `main`) and DIR/.dev.vars (a copy of ENV_FILE), and prints DIR/wrangler.toml.
# Why: in `wrangler dev -c wrangler.toml -c OTHER`, `--env-file` reaches only the first worker;
# the Durable Objects' script reads the `.dev.vars` beside its own config. A stack with its own
# settings (make dev, each test) gets its own copy; state and KV are the first worker's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
sed "s#^main = \"#main = \"$root/#" "$root/wrangler.objects.toml" > "$1/wrangler.toml"
cp "$2" "$1/.dev.vars"
echo "$1/wrangler.toml"
