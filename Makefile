# The two commands of the README: `make run` (the main job on the embedded
# default) and `make test` (the whole suite). Both set everything up themselves
# on a fresh Debian machine: a virtualenv, the CPU torch wheel, the project,
# and the simulators from apt.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.hwpart-installed
EXTRAS  ?= gpu,sim,test,cluster

.PHONY: setup run test lint clean

# command -> Debian package, for what the suite needs beyond Python packages:
# Icarus for the cocotb RTL tests, g++ for hls4ml's C simulation, Yosys for
# resource estimates of generated RTL.
APT_NEEDS := iverilog:iverilog g++:g++ yosys:yosys

$(STAMP): pyproject.toml
	@missing=""; for pair in $(APT_NEEDS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	$(PY) -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing with apt-get:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; fi
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	# PYNQ finds the simulated board by itself when HWPART_SIM_BOARD=BOARD is set
	# (a site-packages .pth that does nothing without it; docs/simulation.md)
	$(BIN)/hwpart sim discovery --install >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# The main job: build (or reuse from the content cache) the jet-tagging MLP's
# overlay for the PYNQ-Z2 as two RMs, then plan and run it on the CPU, the GPU
# when there is one, and the simulated board (a real board when PYNQ finds one).
# The first RM is pinned to the FPGA and the solver places the rest: for a model
# this small an x86 host alone is faster than a modeled 100 MHz fabric behind a
# DMA, and even for energy it wins whenever it profiles fast (its idle power over
# the slower FPGA pipeline's cycle outweighs the fabric's 2 W), so without the
# pin the plan is all-CPU (`--objective energy` shows the trade; the output says
# why each device got its layers).
# The run is adaptive. After 1 s of warm-up the re-allocator (NPM) checks the plan
# on what its stages measure: here the simulated board's own host time makes the
# FPGA stage several times slower than its modeled time, so the NPM moves it to
# the CPU. At 2 s the shipped scenario
# clocks FPGA slot 0 down to a tenth (modeled); the NPM reacts to whatever that
# leaves to gain, and the run ends with its event log and a timeline PNG.
BUNDLE ?= bitstreams/jet_tagger-pynq-z2
SCENARIO ?= fpga-slowdown
run: $(STAMP)
	$(BIN)/hwpart overlay build host/models.py:jet_tagger --input-shape 16 --board pynq-z2 \
	  --groups _0-_3,_4-_5 -o $(BUNDLE)
	$(BIN)/hwpart run host/models.py:jet_tagger --input-shape 16 --auto --overlay $(BUNDLE) \
	  --pin _0-_3=fpga --batch 256 --threads 1 --adapt --scenario $(SCENARIO) \
	  --timeline timeline.png --report run-report.json --metrics metrics.jsonl

test: $(STAMP)
	$(BIN)/ruff check hwpart host bench tests
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check hwpart host bench tests

clean:
	rm -rf $(VENV) build *.egg-info
