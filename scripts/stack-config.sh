#!/usr/bin/env bash
# Usage: scripts/stack-config.sh DIR ENV_FILE [--no-build]
# Writes the two workers' configs for one local stack and prints them as wrangler's `-c` args:
#   DIR/objects/wrangler.toml  wrangler.objects.toml with an absolute `main`, and beside it
#                              DIR/objects/.dev.vars, a copy of ENV_FILE. Why: in
#                              `wrangler dev -c A -c B`, `--env-file` reaches only the first
#                              worker; the second reads the `.dev.vars` beside its own config.
#   DIR/front/wrangler.toml    (--no-build only) wrangler.toml with absolute paths and without
#                              its build hook: a test stack runs what `make test` built, and
#                              editing a source file while tests run does not restart it.
# State and KV are the first worker's (`--persist-to`), shared by both.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$1 env_file=$2
mkdir -p "$dir/objects"
sed "s#^main = \"#main = \"$root/#" "$root/wrangler.objects.toml" > "$dir/objects/wrangler.toml"
cp "$env_file" "$dir/objects/.dev.vars"
front=$root/wrangler.toml
if [ "${3:-}" = --no-build ]; then
  mkdir -p "$dir/front"
  awk -v root="$root" '
    /^\[/ { skip = ($0 == "[build]") }
    skip { next }
    /^main = "/ { sub(/^main = "/, "main = \"" root "/") }
    /^directory = "/ { sub(/^directory = "/, "directory = \"" root "/") }
    { print }' "$root/wrangler.toml" > "$dir/front/wrangler.toml"
  front=$dir/front/wrangler.toml
fi
printf '%s\n%s\n' "$front" "$dir/objects/wrangler.toml"
