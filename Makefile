# Two user-facing targets: `make demo` and `make test`. Both work on a fresh clone with
# only python3: they create .venv and install the project into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo report test benchmark clean

# The demo's model, its scenarios and the fit. The report's levers run the model in the page
# (`crisis report --model`); `crisis grid` still makes precomputed grids for comparison tables.
DEMO_MODEL ?= models/reformism/reformism.mdl
DEMO_SCENARIOS ?= -s baseline -s reform_victory -s recession_austerity -s recession_hold_the_line \
	-s militant_minority -s gradualist_world
DEMO_RUNS ?= out/reformism.nc
DEMO_FIT ?= out/reformism-us-fit.nc
DEMO_CALIBRATION ?= models/reformism/calibration/us.toml
# The crossroads: the shock hits in year 45; reform_victory is the same reformed economy
# without it, so each "vs" column is what the crisis and the government's answer cost.
DEMO_SUMMARY ?= --summary "welfare 45-65=mean(welfare_spending_per_head, 45, 65)" \
	--summary "welfare 65-100=mean(welfare_spending_per_head, 65, 100)" \
	--summary "legitimacy 45-65=mean(legitimacy, 45, 65)" --summary "min profit rate=min(profit_rate)" \
	--summary "max public debt=max(public_debt_ratio)" --summary "max strikes=max(strike_activity)" \
	--against reform_victory

# `make report RUNS=runs.nc [MODEL=model.mdl] [GRID=grid.nc] [FIT=fit.nc] [REPORT=out/report.html]`: the HTML report.
RUNS ?= $(DEMO_RUNS)
MODEL ?=
GRID ?=
FIT ?=
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
	$(BIN)/crisis run $(DEMO_MODEL) $(DEMO_SCENARIOS) $(DEMO_SUMMARY) --output $(DEMO_RUNS)
	$(BIN)/crisis calibrate $(DEMO_CALIBRATION) --force --output $(DEMO_FIT)
	@$(MAKE) --no-print-directory report RUNS=$(DEMO_RUNS) MODEL=$(DEMO_MODEL) FIT=$(DEMO_FIT) REPORT=$(REPORT)

report: $(VENV)/.installed
	$(BIN)/crisis report --runs $(RUNS) $(if $(MODEL),--model $(MODEL)) $(if $(GRID),--grid $(GRID)) $(if $(FIT),--fit $(FIT)) --output $(REPORT)
	@echo "Open $(abspath $(REPORT))"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# Speed measurements (not tests): tables on stdout, JSON under out/benchmarks/.
benchmark: $(VENV)/.installed-test
	$(BIN)/python -m tests.benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache
