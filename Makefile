# Alcor developer entry points.  `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# OpenStack Keystone for the authentication tests, in a virtualenv of its own (its pins would
# fight ours); tests/keystone_cloud.py runs it.
KEYSTONE_VENV    ?= .venv-keystone
KEYSTONE_VERSION ?= 30.0.0
KEYSTONE_STAMP   := $(KEYSTONE_VENV)/.installed
# Every package is installed at the version CI tested: constraints.txt (ours) and
# constraints-keystone.txt (Keystone's) pin them all; `make lock` re-resolves them.
LOCK_VENV        := .venv-lock

.PHONY: run test lint typecheck check bench demo clean keystone lock

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

$(KEYSTONE_STAMP): constraints-keystone.txt
	test -x $(KEYSTONE_VENV)/bin/python || $(PYTHON) -m venv $(KEYSTONE_VENV)
	$(KEYSTONE_VENV)/bin/pip install --quiet --upgrade pip
	$(KEYSTONE_VENV)/bin/pip install --quiet -c constraints-keystone.txt \
		'keystone==$(KEYSTONE_VERSION)'
	touch $(KEYSTONE_STAMP)

## lock: after a dependency change, the newest versions pyproject.toml (and KEYSTONE_VERSION)
## allow into constraints.txt (constraints-keystone.txt); then `make test`, and commit them
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet -e '.[test]'
	$(LOCK_VENV)/bin/pip freeze --exclude-editable > constraints.txt
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet 'keystone==$(KEYSTONE_VERSION)'
	$(LOCK_VENV)/bin/pip freeze > constraints-keystone.txt
	rm -rf $(LOCK_VENV)

## keystone: the identity service the authentication tests run (.venv-keystone, about 45 s)
keystone: $(KEYSTONE_STAMP)

## run: start the all-in-one server on 127.0.0.1:9696 with its SQLite file under ./var
run: $(STAMP)
	mkdir -p var
	$(BIN)/alcor server

## test: lint, type-check and run every test (PostgreSQL and Keystone tests start their own)
test: $(STAMP) $(KEYSTONE_STAMP) lint typecheck
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check alcor tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

## bench: W1 (API), W3 (compile) and W2 (fan-out) benchmarks; figures go to docs/benchmarks.md
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.w1_api
	$(BIN)/python -m bench.w3_compile
	$(BIN)/python -m bench.w2_fanout

## model: the model-based convergence test, long (MODEL_EXAMPLES runs of MODEL_STEPS steps;
## `make test` runs 25 of 30)
MODEL_EXAMPLES ?= 2000
MODEL_STEPS    ?= 50
.PHONY: model
model: $(STAMP)
	ALCOR_MODEL_EXAMPLES=$(MODEL_EXAMPLES) ALCOR_MODEL_STEPS=$(MODEL_STEPS) \
		$(BIN)/python -m pytest -q -p no:cacheprovider -o timeout=0 \
		tests/unit/dpm/test_convergence_model.py

## soak: churn soak (bench/churn_soak.py): SOAK_HOSTS simulated hosts for SOAK_MINUTES minutes
SOAK_HOSTS   ?= 200
SOAK_MINUTES ?= 30
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m bench.churn_soak --hosts $(SOAK_HOSTS) --minutes $(SOAK_MINUTES)

## demo: (as root: sudo make demo) two simulated hosts, two VMs through the API, a ping; cleans up
demo: $(STAMP)
	@test "$$(id -u)" = 0 || { echo "make demo needs root (network namespaces): sudo make demo"; exit 1; }
	command -v ping >/dev/null && command -v nft >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq iputils-ping nftables >/dev/null)
	$(BIN)/alcor demo

clean:
	rm -rf $(VENV) $(KEYSTONE_VENV) $(LOCK_VENV) var .pytest_cache .mypy_cache .ruff_cache
