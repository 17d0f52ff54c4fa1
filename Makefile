# The two commands of the README. Each sets up everything it needs on a fresh
# Debian machine with Python 3.11: a virtual environment, mlserve and its test
# dependencies, and the system programs the job uses (see scripts/system-deps.sh).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mlserve-installed

.PHONY: demo test test-all lint docs venv system-deps bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,llm,ray]'
	@touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/vulture mlserve scripts benchmarks vulture_whitelist.py --min-confidence 60

# Generated pages (docs/cli.md, docs/manifest.md, docs/reliability.*) change only here;
# the tests check that they are current and never write them.
docs: venv
	$(BIN)/python scripts/gen_docs.py

# The default run leaves out tests marked `slow` (10,000-example fuzzing, long
# simulations: about 15 more minutes); `make test-all` runs them too.
test: venv system-deps lint
	$(BIN)/python -m pytest -m "not slow"

test-all: venv system-deps lint
	$(BIN)/python -m pytest

demo: venv system-deps
	@PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

bench: venv system-deps
	$(BIN)/python benchmarks/cli_startup.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
