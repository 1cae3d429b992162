# Two commands matter: `make dev` and `make test`. Each installs what is missing first.
SHELL := bash
.PHONY: dev test build deploy-check setup clean

dev:
	@bash scripts/dev.sh

test:
	@bash scripts/test.sh

build:
	@bash scripts/setup.sh dev
	@bash scripts/build.sh all --sizes

deploy-check: build
	@. scripts/env.sh && wrangler deploy --dry-run --outdir dist/deploy </dev/null

setup:
	@bash scripts/setup.sh test

clean:
	rm -rf target dist worker/build .wrangler/state
