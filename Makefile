# The two commands of the README:
#   make demo   a local ZooKeeper and three replicas, with a live view of who leads
#   make test   lint, type-check and the whole test suite (unit, integration, end to end)
# Both install what they need first (scripts/bootstrap.sh).

VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_ARGS ?=
PYTEST_ARGS ?=

BENCH_ARGS ?= all

.PHONY: bootstrap demo test lint unit bench

bootstrap:
	@VENV=$(VENV) scripts/bootstrap.sh

demo: bootstrap
	$(PY) -m tools.demo $(DEMO_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check app tests tools bench
	$(VENV)/bin/ruff format --check app tests tools bench
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

unit: bootstrap
	$(PY) -m pytest tests/unit -q

# The benchmarks of docs/BENCHMARKS.md (`make bench BENCH_ARGS="graceful --rounds 50"`, or "all --quick").
bench: bootstrap
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench $(BENCH_ARGS)
