# Alcor developer entry points.  `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck check bench demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: start the all-in-one server on 127.0.0.1:9696 with its SQLite file under ./var
run: $(STAMP)
	mkdir -p var
	$(BIN)/alcor server

## test: lint, type-check and run every test (PostgreSQL tests start their own cluster)
test: $(STAMP) lint typecheck
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

## demo: (as root: sudo make demo) two simulated hosts, two VMs through the API, a ping; cleans up
demo: $(STAMP)
	@test "$$(id -u)" = 0 || { echo "make demo needs root (network namespaces): sudo make demo"; exit 1; }
	command -v ping >/dev/null && command -v nft >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq iputils-ping nftables >/dev/null)
	$(BIN)/alcor demo

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
