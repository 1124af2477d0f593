# Two user-facing targets: `make demo` and `make test`. Both work on a fresh clone with
# only python3: they create .venv and install the project into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo report test benchmark clean

# The demo's model, its runs, and the lever grid behind the report's sliders.
DEMO_MODEL ?= models/goodwin/goodwin.mdl
DEMO_RUNS ?= out/goodwin.nc
DEMO_GRID ?= out/goodwin-grid.nc
DEMO_LEVERS ?= --lever "phillips slope=1:1.5" --lever "capital output ratio=2.5:3.5"
DEMO_GRID_VARS ?= wage_share,employment_rate,profit_rate

# `make report RUNS=runs.nc [GRID=grid.nc] [REPORT=out/report.html]`: the HTML report.
RUNS ?= $(DEMO_RUNS)
GRID ?=
REPORT ?= out/report.html

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/crisis run $(DEMO_MODEL) --all-scenarios --output $(DEMO_RUNS)
	$(BIN)/crisis grid $(DEMO_MODEL) $(DEMO_LEVERS) --all-scenarios --vars $(DEMO_GRID_VARS) --output $(DEMO_GRID)
	@$(MAKE) --no-print-directory report RUNS=$(DEMO_RUNS) GRID=$(DEMO_GRID) REPORT=$(REPORT)

report: $(VENV)/.installed
	$(BIN)/crisis report --runs $(RUNS) $(if $(GRID),--grid $(GRID)) --output $(REPORT)
	@echo "Open $(abspath $(REPORT))"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# Speed measurements (not tests): tables on stdout, JSON under out/benchmarks/.
benchmark: $(VENV)/.installed-test
	$(BIN)/python -m tests.benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache
