# Set-up and entry points. `make test` and `make demo` work from a bare machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2 --durations=15

.PHONY: install test demo base-model ablations bench-venv clean

$(STAMP): requirements.txt requirements-gpu-compiler.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -r requirements.txt
	v=$$($(PY) -c 'import jaxlib; print(jaxlib.__version__)') && $(PY) -m pip install --quiet \
	  --no-deps --upgrade --target $(VENV)/gpu-compiler -r requirements-gpu-compiler.txt \
	  jax-cuda12-plugin==$$v jax-cuda12-pjrt==$$v
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# Every test, the end-to-end ones marked `slow` included. The fast subset while developing:
#   make test PYTEST_ARGS='-n 2 -m "not slow"'
test: install
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

clean:
	rm -rf $(VENV) build *.egg-info

# The embedded default: R1-Zero on the shipped tiny base model, with a learning-rate-0 control.
DEMO_CONFIG := experiments/r1_zero.py
demo: install
	rm -rf runs/demo runs/demo-control
	$(PY) -m r1jax.main --config=$(DEMO_CONFIG):tiny --workdir=runs/demo
	$(PY) -m r1jax.main --config=$(DEMO_CONFIG):tiny_control --workdir=runs/demo-control
	$(PY) -m r1jax.report --workdir=runs/demo --control=runs/demo-control

# Regenerates the shipped base model (r1jax/assets/demo_base_model) from generated text, about an
# hour on 2 cores; rerunning resumes. Ships only if the model card's gate passes.
BASE_WORKDIR ?= runs/base-model
base-model: install
	$(PY) -m r1jax.main --config=experiments/base_pretrain.py --workdir=$(BASE_WORKDIR)
	$(PY) -m r1jax.sft.model_card $(BASE_WORKDIR)/export
	rm -rf r1jax/assets/demo_base_model
	cp -r $(BASE_WORKDIR)/export r1jax/assets/demo_base_model

# The paper's small-scale ablations in shape (docs/ablations.md): distillation vs RL on a small
# student, and the RL gain against base size. Re-running skips the stages already done.
ablations: install
	$(PY) -m r1jax.main --config=experiments/ablation_distill_vs_rl.py:tiny --workdir=runs/ablation-distill
	$(PY) -m r1jax.main --config=experiments/ablation_scale.py:tiny --workdir=runs/ablation-scale

# The peers of benchmarks/ (PyTorch, transformers) live in their own venv, out of the main one.
# Run a benchmark on a quiet machine: .venv-bench/bin/python -m benchmarks.<name> (BENCHMARKS.md).
BENCH_VENV := .venv-bench
bench-venv: $(BENCH_VENV)/.installed
$(BENCH_VENV)/.installed: requirements.txt setup.cfg pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -r requirements.txt torch==2.13.0 transformers
	$(BENCH_VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@
