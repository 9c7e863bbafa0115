# One-word targets. `make demo` and `make test` each install what they need first (`make setup`).
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.shopflow-installed
# Tools that must not share the project's virtualenv (checkov), pinned in scripts/tools-constraints.txt.
TOOLS_VENV  ?= .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.shopflow-tools-installed
export SHOPFLOW_TEST_CHECKOV := $(abspath $(TOOLS_VENV))/bin/checkov

.PHONY: setup tools demo test lint typecheck unit services-up services-down airflow-up airflow-down bench faults dataproc-artifact spark-cluster-up spark-cluster-down clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $(STAMP)

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): scripts/tools-constraints.txt scripts/setup-tools.sh
	bash scripts/setup-tools.sh $(TOOLS_VENV)
	touch $(TOOLS_STAMP)

demo: setup
	bash scripts/ensure-postgres.sh
	$(BIN)/shopflow demo

lint: setup
	$(BIN)/ruff check src tests bench dags
	$(BIN)/ruff format --check src tests bench dags

typecheck: setup
	$(BIN)/mypy

# Every test: lint, types, then the whole suite against real services (started here if needed).
# Three pytest-xdist workers: the suite mostly waits on services and child processes (about 7 CPU
# minutes in a 16-minute serial run), so three workers fit two cores; each test has its own home,
# topics and database, and each worker its own Spark session.
# setup and tools install side by side: both are mostly downloads.
test:
	$(MAKE) --no-print-directory -j2 setup tools
	$(MAKE) --no-print-directory lint typecheck
	bash scripts/ensure-postgres.sh
	$(BIN)/shopflow services up
	$(BIN)/pytest -n 3 --dist worksteal

unit: setup tools
	$(BIN)/pytest -m "not integration and not e2e"

services-up: setup
	$(BIN)/shopflow services up

services-down: setup
	$(BIN)/shopflow services down

# The local Airflow 3 with the DAGs of dags/ (UI address and login printed by airflow-up).
airflow-up: setup
	bash scripts/ensure-postgres.sh
	$(BIN)/shopflow services up
	$(BIN)/shopflow airflow up

airflow-down: setup
	$(BIN)/shopflow airflow down

bench: setup
	$(BIN)/python -m bench

# The fault suite at full size against the real services; rewrites RELIABILITY.md.
faults: setup
	bash scripts/ensure-postgres.sh
	$(BIN)/shopflow services up
	$(BIN)/python -m bench faults

# The ETL's Dataproc artefact in dist/: the wheel, and dist/dataproc/ with entrypoint.py (main file),
# shopflow.zip (--py-files: shopflow and its pure-Python dependencies, no pyspark) and
# runtime-provided.txt. Only pip is needed; DATAPROC_PYTHON is the cluster's Python version.
DATAPROC_PYTHON ?= 3.12
BUILD_PYTHON    ?= $(or $(wildcard $(BIN)/python),python3)
DIST            ?= dist
dataproc-artifact:
	$(BUILD_PYTHON) scripts/dataproc_artifact.py --dist $(DIST) --python-version $(DATAPROC_PYTHON)

# A Spark standalone cluster on 127.0.0.1 standing in for Dataproc: a master (spark://127.0.0.1:7077,
# UI http://127.0.0.1:8080) and two workers of 1 core and 2g each, started from the venv pyspark's
# bin/spark-class; pid files and logs in $SHOPFLOW_HOME/run/spark-cluster. Submit with
# `spark-submit --master spark://127.0.0.1:7077 ...` (README, Cloud deployment).
spark-cluster-up: setup
	$(BIN)/python -m shopflow.services.spark_cluster up

spark-cluster-down: setup
	$(BIN)/python -m shopflow.services.spark_cluster down

clean:
	rm -rf .shopflow .pytest_cache .mypy_cache .ruff_cache
