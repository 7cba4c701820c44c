# oatomo: two commands set everything up on a fresh machine.
#   make demo   creates .venv, installs, simulates a scan of a held-out setup (sensor array
#               rotated by an unknown angle) and reconstructs it with the default pipeline
#   make test   creates .venv if needed, installs with the test extras, runs the suite, then
#               checks the installed wheel outside the repository (make wheel-check)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
DEMO_OUT ?= out/demo

.PHONY: demo test wheel-check lint bench clean install model model-family model-family-compare model-tv model-tv-refiner docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

# The test extras include PATATO (it pulls JAX, about 1 GB): the PATATO hand-off test
# reads our export with PATATO itself.
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

# The documentation: API pages from the numpydoc docstrings and the gallery of
# examples/gallery (run while building); warnings are errors. Output: docs/_build/html.
$(VENV)/.installed-docs: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e ".[docs]"
	touch $@ $(VENV)/.installed

docs: $(VENV)/.installed-docs
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

# Every speed benchmark (benchmarks/<topic>/); writes benchmarks/latest.md.
bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run_all.py

# The shipped refinement models: the scanner-family refiner of UBP and DAS images and the
# TV refiner (make model-family and make model-tv-refiner below).
model: model-family model-tv-refiner

clean:
	rm -rf $(VENV) out

# Train the refiner (every 2-D ring or arc scanner; docs/guide/refine.rst): 15 environments
# x 768 scans (about 9 min on one core), the multi-decoder invariant VAE (width 8, depth 2)
# for 32 epochs (12288 steps of 30
# images; about 40 min on one core), the held-out evaluation set with TV baselines, the
# evaluation, and the export (weights only) into the package. Every step resumes where an
# interrupted run stopped.
FAMILY_OUT ?= out/family
FAMILY_ARGS ?= --epochs 32
FAMILY_SHIPPED ?= oatomo/resources/models/family_refiner.npz
model-family: $(VENV)/.installed
	mkdir -p $(FAMILY_OUT)
	$(BIN)/oatomo refiner data -o $(FAMILY_OUT)/train --count 768 --seed 1
	$(BIN)/oatomo refiner train --data $(FAMILY_OUT)/train --model multi-decoder -o $(FAMILY_OUT)/multi-decoder.pt $(FAMILY_ARGS) --resume
	$(BIN)/oatomo refiner eval-set -o $(FAMILY_OUT)/eval --seed 2
	$(BIN)/oatomo refiner evaluate --model invariant=$(FAMILY_OUT)/multi-decoder.pt --data $(FAMILY_OUT)/eval --out $(FAMILY_OUT)/evaluation --uncertainty-modes decoders both
	$(BIN)/oatomo refiner export $(FAMILY_OUT)/multi-decoder.pt -o $(FAMILY_SHIPPED) --uncertainty both --force

# The equal-budget comparison (docs/results/refinement.rst): the pooled beta-VAE and U-Net of
# the same width, trained for the same steps on the same data, scored beside the invariant
# model; evaluation.md reports the drops paired by scan.
model-family-compare: model-family
	$(BIN)/oatomo refiner train --data $(FAMILY_OUT)/train --model beta-vae -o $(FAMILY_OUT)/beta-vae.pt $(FAMILY_ARGS) --resume
	$(BIN)/oatomo refiner train --data $(FAMILY_OUT)/train --model unet -o $(FAMILY_OUT)/unet.pt $(FAMILY_ARGS) --resume
	$(BIN)/oatomo refiner evaluate --model invariant=$(FAMILY_OUT)/multi-decoder.pt beta-vae=$(FAMILY_OUT)/beta-vae.pt unet=$(FAMILY_OUT)/unet.pt --data $(FAMILY_OUT)/eval --out $(FAMILY_OUT)/evaluation_equal_budget --uncertainty-modes decoders both --force

# The shipped TV refiner (docs/results/refinement.rst, "The TV refiner"): the skip-connected
# invariant VAE that refines the pipeline's own default TV image of a correct file. 1255
# training scans of random rings, arcs and linear arrays simulated on a 2x finer grid with a
# detector band and noise (items of benchmarks/refinement/tv_residual.py; 5-10 s each on
# one core, run several of these loops side by side to go faster), the 48/96/192-channel
# network (its size chosen by quality: benchmarks/refinement/capacity.py), 3000 steps of 16
# crops (25-70 min on 2 cores, depending on the machine), then 1000 more steps with 250
# scans of microspheres added (point-like absorbers, a kind the first scans lack; about 12
# min of data on 2 cores and 8-25 of training), exported into the package with test-time augmentation over the 4 quarter
# turns. Every step resumes where an interrupted run stopped.
TVR_OUT ?= out/tv_refiner
TVR_STEP ?= 4000
TVR_RANGES ?= "0 192" "357 201" "700 232" "1400 345" "2100 285"
# the trainer's launcher: e.g. TVR_LAUNCH="$(BIN)/torchrun --nproc-per-node 4"
TVR_LAUNCH ?= $(BIN)/python

model-tv-refiner: $(VENV)/.installed
	mkdir -p $(TVR_OUT)/data
	for r in $(TVR_RANGES); do set -- $$r; OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 $(BIN)/python benchmarks/refinement/tv_residual.py data $(TVR_OUT)/data --start $$1 --count $$2 || exit 1; done
	$(TVR_LAUNCH) benchmarks/refinement/tv_residual.py train $(TVR_OUT)/data $(TVR_OUT)/model.pt --steps 3000 --arch skip-ivae --beta 0.01 --max-items 2400 --channels 48,96,192
	mkdir -p $(TVR_OUT)/microspheres
	for r in "400000 125" "400125 125"; do set -- $$r; OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 $(BIN)/python benchmarks/refinement/tv_residual.py data $(TVR_OUT)/microspheres --start $$1 --count $$2 || exit 1; done
	$(TVR_LAUNCH) benchmarks/refinement/tv_residual.py train $(TVR_OUT)/data,$(TVR_OUT)/microspheres $(TVR_OUT)/model.pt --steps 4000 --arch skip-ivae --beta 0.01 --channels 48,96,192
	$(BIN)/python benchmarks/refinement/tv_residual.py export $$(if [ $(TVR_STEP) = 4000 ]; then echo $(TVR_OUT)/model.pt; else echo $(TVR_OUT)/model_$(TVR_STEP).pt; fi) oatomo/resources/models/tv_refiner.npz --tta 4

# The TV refiner of the --family tv data set (docs/results/refinement.rst, "Refining the TV
# image"), an older experiment: its input is the
# pipeline's mb-tv image. 10 environments (rings, arcs of 90-360 degrees, linear arrays;
# correct and slightly wrong positions) x 120 scans at 64 x 64 simulated on a 2x finer grid
# (about 30 min on one core), the multi-decoder invariant VAE of width 16 for 180 epochs
# (7020 steps of 30 images, the items whose truth peak exceeds 4x the TV image's left out;
# about 20 min on one core), exported to $(TV_OUT)/tv_refiner.npz
# (an option, not the default: oatomo reconstruct --method mb-tv --model ...), then the
# held-out benchmark against TV. Every step resumes where an interrupted run stopped.
TV_OUT ?= out/tv
TV_ARGS ?= --epochs 180 --width 16 --snapshot-every 500 --max-target 4

model-tv: $(VENV)/.installed
	mkdir -p $(TV_OUT)
	$(BIN)/oatomo refiner data --family tv -o $(TV_OUT)/train --count 120 --size 64 --seed 11
	$(BIN)/oatomo refiner train --data $(TV_OUT)/train --inputs mb-tv --model multi-decoder -o $(TV_OUT)/tv.pt $(TV_ARGS) --resume
	$(BIN)/oatomo refiner export $(TV_OUT)/tv.pt -o $(TV_OUT)/tv_refiner.npz --force
	$(BIN)/python benchmarks/refinement/tv_refiner.py --model $(TV_OUT)/tv_refiner.npz --out $(TV_OUT)/report.json
