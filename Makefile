# make run: set up .venv and run the main job (`cnnlab run` on the embedded digits).
# make test: set up .venv and run linting and the test suite (what CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build pinned here is the one this project is tested with.
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.cnnlab-installed

.PHONY: run test lint bench-resnet20 clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,explain,audit,serve,detect,video,transfer,generate]'
	$(PY) -m pip install -q 'diffusers==0.42.1'  # alone: with the extras pip's resolver gives up
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/cnnlab run

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

# Two workers (pytest-xdist), one torch thread each; a file's tests stay on one worker, in order.
test: lint
	$(PY) -m pytest -q -n 2 --dist loadfile

bench-resnet20: $(STAMP)
	$(PY) benchmarks/cifar10_resnet20.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
