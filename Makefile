# ssl_bench developer targets. `make demo` and `make test` set everything up themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install demo lint format test test-fast test-long bench bench-lightly bench-gpu clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create/reuse .venv and install ssl_bench with its dev extras

demo: $(STAMP)  ## SimCLR on Fashion-MNIST (synthetic if absent) on CPU: kNN before vs after SSL
	$(PY) -m ssl_bench.demo

lint: $(STAMP)  ## ruff: lint and format check (100-character lines; pyproject.toml [tool.ruff])
	$(VENV)/bin/ruff check ssl_bench tests
	$(VENV)/bin/ruff format --check ssl_bench tests

format: $(STAMP)  ## ruff: fix what can be fixed and format in place
	$(VENV)/bin/ruff check --fix ssl_bench tests
	$(VENV)/bin/ruff format ssl_bench tests

# Two pytest workers with one OpenMP thread each keep both cores busy (CLI tests spend seconds in
# start-up); more threads per process only make OpenMP's spinning threads fight over the 2 cores.
# --dist loadgroup hands out single tests (under loadfile a file's learning runs travel together and
# can leave one worker alone at the end); tests/conftest.py keeps the tests of a file with a
# module-scoped fixture on one worker and sends the slow learning runs out first.
TEST_ENV := WANDB_MODE=offline OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

test: $(STAMP)  ## the offline CPU test suite of CI (slow learning tests included, `long` ones not)
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadgroup -q -ra --durations=20 -m "not long"

test-long: $(STAMP)  ## the whole Fashion-MNIST experiments of every method (minutes each)
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist load -q -ra -m long

test-fast: $(STAMP)  ## tests without the slower learning runs
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadgroup -q -ra -m "not slow and not long"

bench: $(STAMP)  ## throughput benchmark; appends to BENCHMARKS.md
	$(PY) -m ssl_bench.bench

bench-lightly: $(STAMP)  ## every method beside lightly's loop on this CPU (~25 min on 2 cores; extra [bench])
	$(PY) -m ssl_bench.bench --suite lightly

bench-gpu: $(STAMP)  ## issue 17's GPU targets (SimCLR/BYOL epoch, views, memory, lightly ratio; < 8 min)
	$(PY) -m ssl_bench.bench --suite gpu

clean:  ## remove run outputs and caches
	rm -rf outputs multirun .pytest_cache
