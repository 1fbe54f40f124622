# The two commands of the README:
#   make demo   a local ZooKeeper and three replicas, with a live view of who leads
#   make test   lint, type-check and the whole test suite (unit, integration, end to end)
# Both install what they need first (scripts/bootstrap.sh).

VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: bootstrap demo test lint unit

bootstrap:
	@VENV=$(VENV) scripts/bootstrap.sh

demo: bootstrap
	$(PY) -m tools.demo $(DEMO_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check app tests tools
	$(VENV)/bin/ruff format --check app tests tools
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

unit: bootstrap
	$(PY) -m pytest tests/unit -q
