# Two commands: `make dev` (seed demo traces and open the Dagster UI) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= $(CURDIR)/.data
export DAGSTER_HOME ?= $(DATA)/dagster_home
export TRACE_SUMMARIES_DATA_DIR ?= $(DATA)
DEMO_TEAMS ?= 3
DEMO_HOURS ?= 6
DEMO_TRACES_PER_HOUR ?= 20
# Empty: the last DEMO_HOURS complete hours. Set (e.g. 2026-11-20T09:00) to seed a fixed range.
DEMO_START ?=
HOST ?= 127.0.0.1
PORT ?= 3000

.PHONY: dev test install lint bench seed clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

seed: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/trace-summaries seed --teams $(DEMO_TEAMS) --hours $(DEMO_HOURS) \
		--traces-per-hour $(DEMO_TRACES_PER_HOUR) $(if $(DEMO_START),--start $(DEMO_START))
	$(BIN)/trace-summaries register-teams $$(seq -s, 1 $(DEMO_TEAMS))

dev: seed
	$(BIN)/dagster dev -w workspace.yaml -h $(HOST) -p $(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/run

clean:
	rm -rf $(DATA)
