# cvtrain developer commands. `make demo` and `make test` work on a fresh clone.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo demo-classification demo-detection test test-fast lint tensorboard bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cvtrain experiment=demo_segmentation

demo-classification: $(STAMP)
	$(BIN)/cvtrain experiment=demo_classification

demo-detection: $(STAMP)
	$(BIN)/cvtrain experiment=demo_detection

# Two pytest processes, each test file in one of them (a file's module fixtures train once).
PYTEST := $(BIN)/pytest -q -n 2 --dist loadfile

test: $(STAMP)
	$(PYTEST)

# Everything but the tests that train a model or run the CLI in a subprocess (marked slow).
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check cvtrain tests benchmarks

# Benchmarks (about half an hour on 2 cores): results in benchmarks/results/*.json and RESULTS.md.
bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/full_scale.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/options.py
	$(BIN)/python benchmarks/startup.py

tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir outputs

clean:
	rm -rf outputs/*/ multirun .pytest_cache .ruff_cache build dist *.egg-info
