# Set-up and everyday commands. Every target creates .venv when it is missing.
# torch==2.13.0 is installed first: on this project's machines that is a local CPU build;
# anywhere else it is the normal wheel.
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA := $(abspath ../shared/data)
export DIFFVI_DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)

.PHONY: install demo test test-fast lint format bench bench-quick clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,genomics,tables]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/diffvi demo

test: install
	$(PY) -m pytest -q --durations=15

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: install
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev,genomics,tables,bench]'
	touch $@

# Full benchmarks (budgets recorded in each JSON); bench-quick is the CI-sized version.
bench: $(VENV)/.bench
	$(PY) benchmarks/iwae_speed.py
	$(PY) benchmarks/iwae_table1.py --epochs 10
	$(PY) benchmarks/ddvi_mnist.py --epochs 3 --seeds 0,1,2 --jobs 2
	$(PY) benchmarks/ddvi_mnist.py --epochs 3 --seeds 0 --smooth-prior --beta-reg 1
	$(PY) benchmarks/diffusion_mnist.py --steps 2000
	$(PY) benchmarks/diffusion_mnist.py --steps 6000 --configs cosine-simple --export-dir models
	$(PY) benchmarks/diffusion_speed.py
	$(PY) benchmarks/inverse_mnist.py
	$(PY) benchmarks/inverse_cost.py
	$(PY) benchmarks/red_diff_defaults.py --stages grid --shard 0 --shards 2 & $(PY) benchmarks/red_diff_defaults.py --stages grid --shard 1 --shards 2; wait
	$(PY) benchmarks/red_diff_defaults.py --stages eval --shard 0 --shards 2 & $(PY) benchmarks/red_diff_defaults.py --stages eval --shard 1 --shards 2; wait
	$(PY) benchmarks/red_diff_defaults.py --stages fit,report
	$(PY) benchmarks/cvdm.py --shard 0 --shards 2 & $(PY) benchmarks/cvdm.py --shard 1 --shards 2; wait
	$(PY) benchmarks/cvdm.py --assemble-only
	$(PY) benchmarks/sbn_mnist.py --stages variance,speed --minutes 15
	$(PY) benchmarks/sbn_mnist.py --stages train --minutes 15 --shard 0 --shards 2 & $(PY) benchmarks/sbn_mnist.py --stages train --minutes 15 --shard 1 --shards 2; wait
	$(PY) benchmarks/sbn_mnist.py --stages train --minutes 15
	$(PY) benchmarks/genotypes.py --stages simulate
	$(PY) benchmarks/genotypes.py --stages embed --likelihood-scale 0.03 --shard 0 --shards 2 & $(PY) benchmarks/genotypes.py --stages embed --likelihood-scale 0.03 --shard 1 --shards 2; wait
	$(PY) benchmarks/genotypes.py --stages scale,embed --likelihood-scale 0.03
	$(PY) benchmarks/embed_table.py --shard 0 --shards 2 & $(PY) benchmarks/embed_table.py --shard 1 --shards 2; wait
	$(PY) benchmarks/embed_table.py
	$(PY) benchmarks/vaedgp.py --stages unsupervised --shard 0 --shards 2 & $(PY) benchmarks/vaedgp.py --stages unsupervised --shard 1 --shards 2; wait
	$(PY) benchmarks/vaedgp.py --splits 3

bench-quick: $(VENV)/.bench
	$(PY) benchmarks/iwae_speed.py --quick
	$(PY) benchmarks/iwae_table1.py --quick
	$(PY) benchmarks/ddvi_mnist.py --quick --priors pinwheel
	$(PY) benchmarks/diffusion_mnist.py --quick --datasets mnist --configs learned-vdm,cosine-simple
	$(PY) benchmarks/diffusion_speed.py --quick
	$(PY) benchmarks/inverse_mnist.py --quick
	$(PY) benchmarks/inverse_cost.py --quick
	$(PY) benchmarks/red_diff_defaults.py --quick
	$(PY) benchmarks/cvdm.py --quick
	$(PY) benchmarks/sbn_mnist.py --quick
	$(PY) benchmarks/genotypes.py --quick
	$(PY) benchmarks/embed_table.py --quick
	$(PY) benchmarks/vaedgp.py --quick

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
