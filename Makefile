# cals-bench set-up and checks. `make demo` and `make test` each do all set-up on a fresh machine.
#
# TORCH_SPEC is installed before the package so pip never pulls a CUDA build of torch by itself:
# the tested build is the CPU wheel torch==2.13.0. On a GPU machine pass your own, e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Official weights and data beside the project (read-only; never committed). Used when present.
SHARED ?= $(abspath ../shared)
PIP := $(VENV)/bin/pip
export CALS_BENCH_WEIGHTS ?= $(if $(wildcard $(SHARED)/weights),$(SHARED)/weights,)

.PHONY: setup setup-test demo test lint browser sandbox clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

setup: $(VENV)/bin/python
	$(PIP) install --quiet $(TORCH_SPEC)
	$(PIP) install --quiet -e .

setup-test: $(VENV)/bin/python
	$(PIP) install --quiet $(TORCH_SPEC)
	$(PIP) install --quiet -e ".[test]"

# Headless Chromium for the report browser tests (Debian package); skipped quietly where apt is unusable.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: browser tests will be skipped"; }

# bubblewrap for the submission sandbox (`cals-bench submit`); its tests skip where it cannot run.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) || \
	  echo "bubblewrap not installed: submissions need --trusted and sandbox tests will be skipped"; }

# The main job: the built-in demo protocol, offline, with the identity model.
demo: setup
	$(VENV)/bin/cals-bench run

test: setup-test browser sandbox
	$(VENV)/bin/ruff check cals_bench baselines reference_models tests benchmarks scripts
	$(VENV)/bin/ruff format --check cals_bench baselines reference_models tests benchmarks scripts
	$(VENV)/bin/python -m pytest -q

lint: setup-test
	$(VENV)/bin/ruff check cals_bench baselines reference_models tests benchmarks scripts
	$(VENV)/bin/ruff format --check cals_bench baselines reference_models tests benchmarks scripts

clean:
	rm -rf $(VENV) results reports/*/ test-artifacts .pytest_cache
