# Two commands matter: `make dev` and `make test`. Each installs what is missing first.
SHELL := bash
.PHONY: dev test build deploy-check bench fuzz setup reset clean

dev:
	@bash scripts/dev.sh

test:
	@bash scripts/test.sh

build:
	@bash scripts/setup.sh dev
	@bash scripts/build.sh all --sizes

deploy-check: build
	@. scripts/env.sh && wrangler deploy -c wrangler.objects.toml --dry-run --outdir dist/deploy-objects </dev/null && wrangler deploy --dry-run --outdir dist/deploy </dev/null

# Ours vs the peers (wechatpy, co-wechat) in one run; BENCH_SECONDS per case.
bench:
	@bash scripts/bench.sh

# FUZZ_SECONDS per target (three targets).
fuzz:
	@bash scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

setup:
	@bash scripts/setup.sh test

# Forget the local stack's state, both sides together: the worker's KV and Durable Objects and
# the simulated WeChat's followers, codes and menus (all in .wrangler/state).
reset:
	rm -rf .wrangler/state

clean: reset
	rm -rf target dist worker/build worker/build-objects
