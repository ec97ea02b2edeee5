# The project's set-up and checks. `make serve` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint typecheck check bench bench-deps clean

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

# Every benchmark on both databases, its table and plot in bench/results/ (docs/performance.md):
# `make bench`, or `make bench BENCH_ARGS="--size full"` (`--only NAME,NAME`, `--database sqlite`).
bench: bench-deps
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

# Tools the benchmarks drive (not needed for the tests), and matplotlib for bench/run_all.py's plot.
bench-deps: $(STAMP)
	(command -v wrk && { command -v nginx || test -x /usr/sbin/nginx; }) >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq wrk nginx-light)
	test -x $(BIN)/py-spy || $(BIN)/pip install --quiet py-spy
	$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install --quiet -e '.[bench]'

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
