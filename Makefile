# The two commands a newcomer needs: `make demo` and `make test`.
# Both create or update the virtualenv in .venv and install the package into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit integration venv constraints clean

# constraints.txt pins every installed distribution to the versions the suite last
# passed with, so two installs of one commit get the same code; `make constraints`
# refreshes it from the working venv after a deliberate upgrade.
$(STAMP): pyproject.toml setup.py constraints.txt $(wildcard src/syncbus/*/*.pyx src/syncbus/*/*.pxd src/syncbus/*/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	$(BIN)/python scripts/check_native.py
	touch $(STAMP)

constraints: $(STAMP)
	{ echo '# make constraints: the versions `make venv` installs (pip freeze of a passing venv)'; \
	  $(BIN)/python -m pip freeze --exclude-editable; } > constraints.txt

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy

# Test files run in parallel (pytest-xdist), one whole file per worker at a time
# (--dist loadfile keeps a module's own broker, ``bus_kafka``, with its tests); each
# worker is a pytest session with its own ``kafka`` broker. WORKERS=0 runs serially.
WORKERS ?= auto
PYTEST := $(BIN)/pytest -n $(WORKERS) --dist loadfile

unit: $(STAMP)
	$(PYTEST) -m 'not integration'

integration: $(STAMP)
	$(PYTEST) -m integration

test: lint
	$(PYTEST)

demo: $(STAMP)
	$(BIN)/syncbus demo


clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
