# The two commands a newcomer needs: `make demo` and `make test`.
# Both create or update the virtualenv in .venv and install the package into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-stop test lint unit integration venv clean

$(STAMP): pyproject.toml setup.py $(wildcard src/syncbus/*/*.pyx src/syncbus/*/*.pxd src/syncbus/*/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m 'not integration'

integration: $(STAMP)
	$(BIN)/pytest -m integration

test: lint
	$(BIN)/pytest

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

demo-stop: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh stop

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
