# Stalecast — the two commands a fresh machine needs are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
PORT ?= 3000

.PHONY: run test test-rust lint fmt build gen check-gen test-node

## Build and serve the API, the stream (and the web app once built) on http://localhost:$(PORT),
## with the embedded OpenStack simulator as upstream (a random server changes every 15 s).
run:
	$(CARGO) run --release -p stalecast -- serve --port $(PORT) --sim-churn 15s

## Everything CI checks.
test: lint check-gen test-rust test-node

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

test-rust:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --locked --no-fail-fast; \
	else \
		$(CARGO) test --workspace --locked --no-fail-fast; \
	fi

fmt:
	$(CARGO) fmt --all

## The generated contract: TypeScript bindings (bindings/) and the OpenAPI document (openapi/),
## both from the Rust code. `check-gen` fails when the committed files differ from what it produces.
export TS_RS_EXPORT_DIR := bindings
gen:
	$(CARGO) run --quiet --locked -p stalecast -- gen

check-gen:
	$(CARGO) run --quiet --locked -p stalecast -- gen --check

build:
	$(CARGO) build --workspace --all-targets

## The stock @trpc/client (typed by the generated AppRouter), a bare EventSource, an
## OpenAPI 3.1 validator and the /docs explorer in Debian's chromium, against the real binary.
## Installs its npm packages from the lockfile, and chromium when it is missing.
STALECAST_BIN ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/debug/stalecast
test-node:
	$(CARGO) build --locked -p stalecast
	@command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	cd tests/node && npm ci --no-audit --no-fund
	cd tests/node && npx tsc --noEmit
	cd tests/node && STALECAST_BIN="$(STALECAST_BIN)" npx vitest run
