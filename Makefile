# Two commands on a fresh machine: `make demo` (the main job on embedded defaults) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
SHARED := ../shared/conformance
# checkov pins many packages of its own, so it gets a venv apart from the app's.
IAC_VENV := .venv-iac

.PHONY: deps demo test test-fast lint bench clean iac

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.installed node_modules/.installed

## The bundled sample stream through the whole pipeline (Azurite in memory; console, or the webhooks set).
demo: deps
	$(PY) -m detection demo

## Everything: lint, every rule's own records, ECS conformance, the whole suite (checkov included).
test: deps $(IAC_VENV)/.installed
	$(BIN)/ruff check .
	$(PY) -m detection rules test
	@if [ -x $(SHARED)/check-ecs ]; then $(SHARED)/check-ecs --python $(PY) --min 0.99; \
	  else echo "ECS conformance fixtures not found beside the project: skipped"; fi
	$(BIN)/pytest -q

## The fast suite: no Azurite, HTTP servers or node.
test-fast: $(VENV)/.installed
	$(BIN)/pytest -q -m "not integration"

lint: $(VENV)/.installed
	$(BIN)/ruff check .

bench: $(VENV)/.installed
	$(PY) -m detection bench

$(IAC_VENV)/.installed:
	$(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/pip install --quiet --upgrade pip
	$(IAC_VENV)/bin/pip install --quiet "checkov>=3.2,<4" "pycep-parser>=0.5,<0.6" "tree-sitter>=0.23,<0.27" "tree-sitter-bicep>=1.1,<2"
	touch $@

## Infrastructure checks alone: checkov, then the template tests.
iac: $(IAC_VENV)/.installed $(VENV)/.installed
	$(IAC_VENV)/bin/checkov --framework bicep --skip-download --compact --quiet -d infra
	$(BIN)/pytest -q tests/test_infra.py tests/test_settings_consistency.py

clean:
	rm -rf $(VENV) $(IAC_VENV) node_modules .pytest_cache .ruff_cache
