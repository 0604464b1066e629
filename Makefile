# plora: `make demo` sets up and runs the monthly cycle on the example corpus;
# `make test` sets up and runs the tests. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# torch is installed first, by exact version: on machines with a local CPU wheel (like our CI) pip
# takes it from there; elsewhere this is PyPI's build (CUDA on Linux x86-64). GPU users can pick
# a CUDA flavour: make setup TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
DEMO_HOME ?= demo-home
PYTEST_ARGS ?=
BIN := $(VENV)/bin

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

demo: setup
	$(BIN)/plora init --example --force --home $(DEMO_HOME)
	$(BIN)/plora ingest --home $(DEMO_HOME)
	$(BIN)/plora status --home $(DEMO_HOME)

test: setup
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(DEMO_HOME) .pytest_cache
