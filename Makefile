# Stalecast — the two commands a fresh machine needs are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
PORT ?= 3000

.PHONY: run test test-rust lint fmt build gen check-gen test-node

## Build and serve the API, the stream (and the web app once built) on http://localhost:$(PORT),
## with the embedded OpenStack simulator as upstream (a random server changes every 15 s),
## and /metrics for a local scraper on http://127.0.0.1:$(METRICS_PORT)/metrics.
METRICS_PORT ?= 9464
run:
	$(CARGO) run --release -p stalecast -- serve --port $(PORT) --sim-churn 15s --metrics-addr 127.0.0.1:$(METRICS_PORT)

## Everything CI checks.
test: lint check-gen test-rust test-node

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	# The real-services tests are no default test target (they need the cloud): named.
	$(CARGO) clippy -p stalecast-tests --test openstack --locked -- -D warnings

# The integration tests also run the `stalecast` binary itself (tests/src/child.rs): build
# it first, so that they never run a stale one. They check /metrics with Prometheus's own
# promtool (installed when missing), and the cluster tests start a real redis-server
# (Debian's, installed when missing).
test-rust: promtool redis-server
	$(CARGO) build -p stalecast --locked
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

# ---------------------------------------------------------------------------------------
# The real-services tier: Stalecast against the real Keystone, Glance and Cinder API (PyPI,
# pinned in tests/openstack/requirements.txt, in a virtualenv under target/, built once and
# reused), on free loopback ports with sqlite, and the openstack CLI against `stalecast sim`
# (tests/openstack/run.sh starts the services, runs tests/tests/openstack, stops them).
.PHONY: test-openstack
test: test-openstack
test-openstack:
	$(CARGO) build --locked -p stalecast
	STALECAST_BIN="$(STALECAST_BIN)" CARGO="$(CARGO)" tests/openstack/run.sh

# ---------------------------------------------------------------------------------------
# Web app and browser tests. `make run` builds the dashboard first; `make test` adds its
# unit tests and the end-to-end tests (Debian's chromium, installed when missing).
NPM ?= npm
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
WEB_DEPS := web/node_modules/.package-lock.json
E2E_DEPS := tests/e2e/node_modules/.package-lock.json

.PHONY: web test-web e2e chromium

run: web
test: test-web e2e

## The dashboard: type-check and build into web/dist (served by `stalecast serve` at /).
web: $(WEB_DEPS)
	cd web && $(NPM) run build

## The dashboard's unit tests (vitest): the update hooks against a scripted stream.
test-web: $(WEB_DEPS)
	cd web && $(NPM) test

## Browser end-to-end tests against the real binary.
## The test at 36,000 volumes (scale.test.mjs) runs the release build: its figures are speeds.
e2e: web chromium $(E2E_DEPS)
	$(CARGO) build --locked -p stalecast
	$(CARGO) build --release --locked -p stalecast
	cd tests/e2e && STALECAST_BIN="$(STALECAST_BIN)" STALECAST_RELEASE_BIN="$(RELEASE_DIR)/stalecast" CHROMIUM="$(CHROMIUM)" $(NPM) test

$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && $(NPM) ci --no-audit --no-fund

$(E2E_DEPS): tests/e2e/package.json tests/e2e/package-lock.json
	cd tests/e2e && $(NPM) ci --no-audit --no-fund

## promtool, Prometheus's checker of the text format (tests/tests/integration/metrics.rs):
## taken from Debian's prometheus package, unpacked rather than installed, so that no
## Prometheus server is set up or started.
PROMTOOL_DIR := /usr/local/bin
.PHONY: promtool
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
		echo "installing promtool from Debian's prometheus package"; \
		tmp=$$(mktemp -d) && chmod 755 $$tmp && cd $$tmp && \
		$(SUDO) apt-get update -qq && apt-get download -qq prometheus && \
		dpkg-deb -x prometheus_*.deb unpacked && \
		$(SUDO) install -m 755 unpacked/usr/bin/promtool $(PROMTOOL_DIR)/promtool && \
		cd / && rm -rf $$tmp; \
	}

## Three nodes on one Redis behind nginx, as local processes (tests/cluster/cluster.sh):
## `make cluster` prints the URL (http://127.0.0.1:$(PORT)), `make cluster-stop` stops them all.
.PHONY: cluster cluster-stop nginx
cluster: web redis-server nginx
	$(CARGO) build --release --locked -p stalecast
	STALECAST_BIN="$(RELEASE_DIR)/stalecast" PORT=$(PORT) tests/cluster/cluster.sh start

cluster-stop:
	tests/cluster/cluster.sh stop

nginx:
	@command -v nginx >/dev/null 2>&1 || { \
		echo "installing Debian's nginx for make cluster"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx >/dev/null; \
	}

.PHONY: redis-server
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing Debian's redis-server for the cluster tests"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; \
	}

chromium:
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; \
	}

# ---------------------------------------------------------------------------------------
# Load test (tests/src/bin/loadtest). `make loadtest` runs one scenario with the defaults
# (2,000 SSE clients, 10 mutations/s for 10 s) against a release build; pass knobs with
# LOADTEST_ARGS="--clients 10000 --rate 2" (see `loadtest --help`). `make bench` runs the
# standard matrix and writes tests/load/RESULTS.md. `make test` runs a small smoke scenario
# that fails on any lost notification or failed connection, and on any stalled client that
# was not sent a `lagged` resync. Loopback buffers hold some 250 notifications for a stalled
# client even with the smallest buffers it can ask for, so the smoke run publishes 400 and
# lets the server queue 16 more per stream before it must resync it. Then a cluster smoke:
# Redis and three nodes (Debian's redis-server, installed when missing), 100 clients on each,
# the nodes restarted one at a time while the mutations flow; it fails unless every client
# of a stopped node resumed on the next one with nothing lost and no resync.
RELEASE_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release
DEBUG_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/debug
LOADTEST_ARGS ?=

.PHONY: loadtest bench test-load

loadtest:
	$(CARGO) build --release --locked -p stalecast -p stalecast-tests --bin stalecast --bin loadtest
	$(RELEASE_DIR)/loadtest $(LOADTEST_ARGS)

# The matrix's cluster scenarios start Debian's redis-server (installed when missing).
bench: redis-server
	$(CARGO) build --release --locked -p stalecast -p stalecast-tests --bin stalecast --bin loadtest
	$(RELEASE_DIR)/loadtest bench $(LOADTEST_ARGS)

test: test-load
test-load: redis-server
	$(CARGO) build --locked -p stalecast -p stalecast-tests --bin stalecast --bin loadtest
	$(DEBUG_DIR)/loadtest --clients 300 --rate 50 --duration 8s --slow-clients 5 --expect-lagged \
		--server-arg=--channel-capacity=16 --no-progress --assert --name smoke --server-bin $(DEBUG_DIR)/stalecast \
		--audience admin:stalecast,alice:alice,bob:bob
	$(DEBUG_DIR)/loadtest --nodes 3 --clients 300 --rate 20 --duration 12s --rolling-restart --restart-pause 2s \
		--no-progress --assert --name cluster-smoke --server-bin $(DEBUG_DIR)/stalecast
