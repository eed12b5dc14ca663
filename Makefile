# Two commands matter on a fresh clone: `make run` (the tiny study, on CPU) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STUDY  ?= tiny
ARCH   ?= mpt
PROFILE ?= workflows/profiles/gpu.yaml

.PHONY: install lock run test lint format bench bench-contamination bench-gauntlet bench-train bench-ranks check-gpu check-gpu-wheels gauntlet-volumes manifest submit image e2e e2e-local golden clean

install: $(VENV)/.installed

# torch is pinned in pyproject.toml (a CPU build here); setuptools<81 because alpaca-eval imports pkg_resources.
# Every version comes from images/constraints.txt, the lock the images install with: tests and images agree.
$(VENV)/.installed: pyproject.toml images/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c images/constraints.txt --upgrade pip "setuptools<81" wheel
	$(BIN)/pip install -q -c images/constraints.txt -e ".[test]"
	touch $@

# Re-resolve every dependency to its newest allowed release, then rewrite the lock from that environment.
lock:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade --upgrade-strategy eager pip "setuptools<81" wheel -e ".[test]"
	VENV=$(VENV) bash images/build.sh lock
	touch $(VENV)/.installed

run: install
	$(BIN)/limit run $(STUDY)

# Two workers, each taking whole test files (module fixtures run once): 26-29 min for ~700 tests on 2 cores here;
# serially the suite took 27 min at 600 tests (docs/benchmarks.md).
test: install lint
	$(BIN)/pytest -q -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check limit workflows tests benchmarks images
	$(BIN)/ruff format --check limit workflows tests benchmarks images

format: install
	$(BIN)/ruff check --fix limit workflows tests benchmarks images
	$(BIN)/ruff format limit workflows tests benchmarks images

# The tiny study twice: warm step processes against a fresh interpreter per step (~4 minutes on 2 cores).
bench: install
	$(BIN)/python benchmarks/study.py --out runs/bench/study.json

bench-gauntlet: install
	$(BIN)/python benchmarks/gauntlet.py --arch $(ARCH) --out runs/bench/gauntlet.json

# The 13-gram contamination check: 29 v0 files and the judge prompts against 60k training rows (~20 s on 2 cores).
bench-contamination: install
	$(BIN)/python benchmarks/contamination.py --out runs/bench/contamination.json

# Packed vs dynamic padding vs padding to max_seq_len, same rows and steps (~6 min on 2 cores).
bench-train: install
	$(BIN)/python benchmarks/train.py --out runs/bench/train.json

# On a GPU node before a long study (7 minutes on an H100/H200; docs/benchmarks.md says what each stage measures).
check-gpu: install
	$(BIN)/limit check-gpu --out runs/check-gpu/check-gpu.json

# The planner's table of v0's scoring volumes, from the shared gauntlet files (the four it lacks stay estimates).
gauntlet-volumes: install
	$(BIN)/python -c 'from pathlib import Path; from limit.gauntlet.volume import write_table; write_table(Path("../shared/gauntlet_data"))'

# Wheels for a bare GPU machine that has torch and transformers only (the lent H200's list by default).
check-gpu-wheels: install
	$(BIN)/python images/gpu_wheels.py --have images/gpu-node-packages.txt --out .whl

# Time per optimizer step of the tiny finetune, one process against 2 CPU processes, ZeRO-2 and 3 (~3 min).
bench-ranks: install
	$(BIN)/python benchmarks/distributed.py --out runs/bench/ranks.json

manifest: install
	$(BIN)/limit manifest $(STUDY) --profile $(PROFILE) --out runs/manifests/$(STUDY).yaml

submit: install
	$(BIN)/limit submit $(STUDY) --profile $(PROFILE)

golden: install
	$(BIN)/python tests/golden.py

image:
	bash images/build.sh

e2e:
	bash tests/e2e/run.sh

# The tiny study's Argo manifest run task by task as local "pods" (moto S3, a real MLflow server): no cluster.
e2e-local: install
	$(BIN)/python tests/e2e/local_pods.py

clean:
	rm -rf runs .pytest_cache
