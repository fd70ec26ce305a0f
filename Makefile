# make demo  — the main job end to end on the embedded default (espeak-ng corpus -> shards)
# make test  — the test suite
# Both set everything up on a fresh machine: a virtual environment in .venv, the project with its
# extras, and the Debian packages that are missing (espeak-ng).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_output
EXTRAS ?= all
PYTEST_ARGS ?=

.PHONY: demo test setup sysdeps clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

sysdeps:
	@command -v espeak-ng >/dev/null || { \
	  echo "installing espeak-ng (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq espeak-ng >/dev/null; }

setup: $(VENV)/.installed sysdeps

demo: setup
	$(VENV)/bin/mwc demo-data --out $(DEMO_DIR)/data
	$(VENV)/bin/mwc shard --source $(DEMO_DIR)/data --out $(DEMO_DIR)/shards --config configs/demo.yaml
	@echo "demo shards, manifests and quarantine report: $(DEMO_DIR)/shards"

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
