# make demo  — the main job end to end on the embedded default (espeak-ng corpus -> shards -> 2-process training -> eval)
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

# espeak-ng: speech for the demo and the tests; slurm-wlm + munge: the tests run a real scheduler
sysdeps:
	@missing=""; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	command -v slurmctld >/dev/null || missing="$$missing slurm-wlm"; \
	[ -x /usr/sbin/munged ] || missing="$$missing munge"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

setup: $(VENV)/.installed sysdeps

demo: setup
	$(VENV)/bin/mwc demo-data --out $(DEMO_DIR)/data
	$(VENV)/bin/mwc shard --source $(DEMO_DIR)/data --out $(DEMO_DIR)/shards --config configs/demo.yaml
	PATH=$(abspath $(VENV))/bin:$$PATH launch/train.sh cpu configs/tiny_cpu.yaml \
	  data.shard_dir=$(DEMO_DIR)/shards train.output_dir=$(DEMO_DIR)/runs/tiny
	$(VENV)/bin/mwc eval --model $(DEMO_DIR)/runs/tiny/final --data $(DEMO_DIR)/shards --split test --limit 64 \
	  --language es --max-length 40 --out $(DEMO_DIR)/runs/tiny/eval-test
	@echo "shards: $(DEMO_DIR)/shards   run: $(DEMO_DIR)/runs/tiny (metrics.jsonl, eval/, final/)   test eval: $(DEMO_DIR)/runs/tiny/eval-test"

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
