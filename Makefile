# oatomo: two commands set everything up on a fresh machine.
#   make demo   creates .venv, installs, simulates a scan of a held-out setup (sensor array
#               rotated by an unknown angle), reconstructs it and refines it with the model
#   make test   creates .venv if needed, installs with the test extras, runs the suite, then
#               checks the installed wheel outside the repository (make wheel-check)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
DEMO_OUT ?= out/demo

.PHONY: demo test wheel-check lint bench clean install model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

demo: $(VENV)/.installed
	mkdir -p $(DEMO_OUT)
	$(BIN)/oatomo simulate --setup ring32_rotation --phantom vessels --seed 1 -o $(DEMO_OUT)/scan.h5 --force
	$(BIN)/oatomo reconstruct $(DEMO_OUT)/scan.h5 -o $(DEMO_OUT)/image.h5 --png $(DEMO_OUT)/image.png --force
	@echo "demo: scan $(DEMO_OUT)/scan.h5, image $(DEMO_OUT)/image.h5, figure $(DEMO_OUT)/image.png"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q
	$(MAKE) wheel-check

# Build the wheel, install it into a fresh venv, run the README's commands and Python
# snippet from a directory outside the repository (.ci/wheel_check.sh).
wheel-check: $(BIN)/python
	PYTHON=$(abspath $(BIN)/python) .ci/wheel_check.sh

lint: $(VENV)/.installed-test
	$(BIN)/ruff check oatomo tests benchmarks examples

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run_all.py

# Train the default refinement model shipped as oatomo/resources/models/refiner.pt (about 15 min on 2 cores):
# training data from the position-uncertainty setups, held-out evaluation, then install.
MODEL_OUT ?= out/model
TRAIN_ARGS ?= --epochs 12
model: $(VENV)/.installed
	mkdir -p $(MODEL_OUT)
	$(BIN)/oatomo dataset --config simulations/exp_train.toml -o $(MODEL_OUT)/train.h5 --seed 1 --force
	$(BIN)/oatomo dataset --config simulations/exp_heldout.toml -o $(MODEL_OUT)/test.h5 --seed 2 --force
	$(BIN)/oatomo train --data $(MODEL_OUT)/train.h5 --model multi-decoder -o $(MODEL_OUT)/refiner.pt $(TRAIN_ARGS) --force
	$(BIN)/oatomo evaluate --model invariant=$(MODEL_OUT)/refiner.pt --data $(MODEL_OUT)/test.h5 --out $(MODEL_OUT)/evaluation --record
	cp $(MODEL_OUT)/refiner.pt $(MODEL_OUT)/refiner.json oatomo/resources/models/

clean:
	rm -rf $(VENV) out
