# The two set-up commands (README): `make serve` and `make test`. Both work from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test lint protos lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs are pinned by requirements.lock (regenerate with `make lock`).
$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet -c requirements.lock -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test]'
	touch $@ $(VENV)/.installed

serve: $(VENV)/.installed
	$(BIN)/tolstoy serve

# buf (lints the gRPC contract in protos/) comes from npm, pinned by package.json and package-lock.json.
# Its launcher finds the platform binary (an optional dependency) by itself: no install script needed.
BUF := node_modules/.bin/buf

$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

lint: $(VENV)/.installed-test $(BUF)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BUF) lint
	$(BUF) format --diff --exit-code
	$(BIN)/python scripts/protos.py --check

# Format and lint protos/, then regenerate entrypoints/grpc/gen from them (commit the result).
protos: $(VENV)/.installed-test $(BUF)
	$(BUF) format --write
	$(BUF) lint
	$(BIN)/python scripts/protos.py

test: lint
	$(BIN)/pytest

lock: $(VENV)/.installed-test
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis node_modules
