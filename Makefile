# Two entry points on a fresh machine: `make demo` (the main job on the bundled samples)
# and `make test` (the test suite). Both create ./.venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; GPU users install their CUDA torch first and `pip install -e .`
TORCH_PIN ?= torch==2.13.0
MEGATRON_PIN ?= megatron-core==0.16.1
DEMO_OUT ?= runs/quickstart

.PHONY: setup demo test lint clean

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	# megatron-core only proves format compatibility in tests; its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps $(MEGATRON_PIN)
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/mixkit experiment --config experiments/quickstart.toml --out $(DEMO_OUT)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
