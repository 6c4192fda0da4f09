# Set-up and entry points for a fresh machine that has only Python.
# `make demo` and `make test` each create .venv, install torch first (so that pip does not pull a
# multi-GB CUDA build where a CPU build is available), then the package, then run.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= ccq-demo
BIN := $(VENV)/bin

.PHONY: install demo test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/ccq demo --out $(DEMO_OUT)

# pytest exits 5 when it collects no test: treat that as a failure of the suite, not a pass.
test: install
	$(BIN)/ruff check ccq tests benchmarks
	$(BIN)/ruff format --check ccq tests benchmarks
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check ccq tests benchmarks
	$(BIN)/ruff format --check ccq tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
