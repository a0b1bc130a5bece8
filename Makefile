# The two commands a new user runs: `make demo` (main job) and `make test` (test suite).
PYTHON ?= python3
# `make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu`: torch's CPU build (PyPI's Linux torch is CUDA's)
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test quick lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mscbench prepare synthetic
	$(BIN)/mscbench compare --dataset synthetic --models dnn,shared_bottom --base dnn --by scenario

test: $(STAMP)  # every test: the slow ones too (-m overrides pyproject's addopts)
	$(BIN)/python -m pytest -q -m "slow or not slow" tests

quick: $(STAMP)  # the tests a bare `pytest` runs: the learning check on four representative models only
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/pip install --quiet ruff==0.17.6  # pinned: its default rules change between releases
	$(BIN)/ruff check mscbench tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) data runs
