# The one entry point for people and CI. Every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv demo test test-python test-vscode lint typecheck bench clean

help:
	@echo "make demo   - run a swarm of built-in agents over a scratch copy of samples/inventory"
	@echo "make test   - set everything up and run every test (Python, node, Neovim, VS Code build)"
	@echo "make bench  - run the benchmark scripts, writing benchmarks/results/*.json"

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

test-python: $(STAMP)
	$(BIN)/python -m pytest -q

test-vscode: $(STAMP)
	cd vscode-extension && npm ci --no-audit --no-fund && npm run build && npm test && npm run package

bench: $(STAMP)
	@for script in benchmarks/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) vscode-extension/node_modules vscode-extension/*.vsix
