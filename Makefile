# The project's set-up and checks. `make serve` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint typecheck check bench-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/bitbybit serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/lint-imports --no-logo  # the layering contracts in pyproject.toml

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

# Tools the benchmarks drive (not needed for the tests).
bench-deps: $(STAMP)
	(command -v wrk && { command -v nginx || test -x /usr/sbin/nginx; }) >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq wrk nginx-light)
	test -x $(BIN)/py-spy || $(BIN)/pip install --quiet py-spy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
