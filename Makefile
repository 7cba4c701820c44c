# oatomo: two commands set everything up on a fresh machine.
#   make demo   creates .venv, installs, simulates a scan from a bundled setup and reconstructs it
#   make test   creates .venv if needed, installs with the test extras, runs the suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
DEMO_OUT ?= out/demo

.PHONY: demo test lint bench clean install

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
	$(BIN)/oatomo simulate --setup simulations/ring32_r22.toml --phantom vessels --seed 1 -o $(DEMO_OUT)/scan.h5 --force
	$(BIN)/oatomo reconstruct $(DEMO_OUT)/scan.h5 -o $(DEMO_OUT)/image.h5 --png $(DEMO_OUT)/image.png --force
	@echo "demo: scan $(DEMO_OUT)/scan.h5, image $(DEMO_OUT)/image.h5, figure $(DEMO_OUT)/image.png"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check oatomo tests benchmarks examples

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) out
