# make demo  — the whole product on the embedded default: espeak-ng Spanish -> shards -> real whisper-base ->
#              QLoRA fine-tune (2 processes) -> distilled student -> eval -> exports -> demo_output/REPORT.md
# make test  — the test suite
# make gpu-check — the GPU-only checks (skips without CUDA)
# make lint  — ruff check + ruff format --check (CI runs it before the tests)
# Both set everything up on a fresh machine: a virtual environment in .venv, the project with its
# extras, and the Debian packages that are missing (espeak-ng, fortunes-es, slurm-wlm, munge, iproute2).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_output
EXTRAS ?= all
PYTEST_ARGS ?=

.PHONY: demo test lint gpu-check setup sysdeps clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-cache-dir --upgrade pip
	$(PY) -m pip install -q --no-cache-dir -e '.[$(EXTRAS)]'
	touch $@

# espeak-ng: speech for the demo and the tests; fortunes-es: the demo's natural Spanish text;
# slurm-wlm + munge: the tests run a real scheduler;
# iproute2: the two-node tests make network namespaces (ip netns)
sysdeps:
	@missing=""; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	[ -d /usr/share/games/fortunes/es ] || missing="$$missing fortunes-es"; \
	command -v slurmctld >/dev/null || missing="$$missing slurm-wlm"; \
	[ -x /usr/sbin/munged ] || missing="$$missing munge"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

setup: $(VENV)/.installed sysdeps

demo: setup
	$(VENV)/bin/mwc demo --out $(DEMO_DIR)
	@echo "report: $(DEMO_DIR)/REPORT.md"

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# ruff (configured in pyproject.toml): lint and formatting, as CI runs them
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# one script, on one GPU (under 8 minutes): NCCL, fp16/bf16 steps, QLoRA on CUDA NF4, ZeRO-2, loss goes down,
# throughput; prints one table. Without CUDA it says SKIP and exits 0 (`tests/gpu/gpu_check.py --cpu-smoke` runs
# the CPU-capable rows). docs/PERFORMANCE.md says what it covers.
gpu-check: $(VENV)/.installed
	$(PY) tests/gpu/gpu_check.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
