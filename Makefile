# ssl_bench developer targets. `make demo` and `make test` set everything up themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install demo lint format test test-fast test-long bench bench-lightly bench-gpu gpu-wheels \
	bench-gpu-device clean

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

# A lent GPU machine (the workplace's device tool) has its own python3 with PyTorch, Lightning, timm,
# torchmetrics and rich, and no network. `make gpu-wheels` puts here, into .whl/ (git-ignored), the
# wheels it lacks for the GPU suite; the device then runs `make bench-gpu-device` over the working
# tree with .whl/ carried, and the tables come back from $$OUT (README.md, "Speed").
GPU_WHEELS := hydra-core==1.3.8 omegaconf==2.3.1 lightly==1.6.0
gpu-wheels: $(STAMP)  ## the wheels a bare GPU machine lacks for the GPU suite, into .whl/
	rm -rf .whl && mkdir -p .whl
	$(PY) -m pip download -q --no-deps -d .whl $(GPU_WHEELS)
	$(PY) -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3

GPU_OUT ?= $(if $(OUT),$(OUT),.)
DEVICE_PY ?= python3
GPU_ARGS ?=
bench-gpu-device:  ## on a lent GPU machine: the GPU suite with its python3 and .whl/ (no venv, no network)
	$(DEVICE_PY) -m pip install -q --no-index --no-deps --no-compile --target /tmp/ssl_bench_site .whl/*.whl
	PYTHONPATH=/tmp/ssl_bench_site:$(CURDIR) WANDB_MODE=disabled PYTHONUNBUFFERED=1 \
	  $(DEVICE_PY) -m ssl_bench.bench --suite gpu --out $(GPU_OUT)/gpu_suite.md \
	  --json $(GPU_OUT)/gpu_suite.json $(GPU_ARGS)

clean:  ## remove run outputs and caches
	rm -rf outputs multirun .pytest_cache
