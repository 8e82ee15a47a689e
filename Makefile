# NeuroSAM3D: `make demo` runs the whole pipeline on the shipped samples, `make test` the tests.
# Both start with `make install`, which is a no-op while pyproject.toml and requirements.lock
# are unchanged.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# uv does not read pip's configuration: hand it the local folder that holds the CPU torch wheel.
UV_ENV := UV_FIND_LINKS="$${PIP_FIND_LINKS:-/opt/wheels}" UV_PYTHON="$(BIN)/python"

.PHONY: install demo test lint format lock clean-demo dagster mlflow-ui serve dvc-repro \
	team-up team-down team-clean test-team

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==0.13.9
	$(UV_ENV) $(BIN)/uv pip install --compile-bytecode --quiet -r requirements.lock -e .
	touch $(STAMP)

# Re-resolve the pinned set after editing pyproject.toml's dependencies.
lock: $(BIN)/python
	$(UV_ENV) $(BIN)/uv pip compile pyproject.toml --extra dev --extra team --no-header --no-annotate -o requirements.lock

# NEUROSAM3D_DEPLOYMENT=team make demo: the same on the team services (`make team-up` first).
demo: install
	team_env="$${NEUROSAM3D_TEAM_DIR:-.team}/env"; \
		if [ "$$NEUROSAM3D_DEPLOYMENT" = team ] && [ -f "$$team_env" ]; then source "$$team_env"; fi; \
		$(BIN)/python -m neurosam3d.demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The Dagster UI on the embedded default (DAGSTER_HOME=.dagster_home, telemetry off), 127.0.0.1.
dagster: install
	mkdir -p .dagster_home && cp pipelines/dagster.yaml .dagster_home/dagster.yaml
	DAGSTER_HOME="$$PWD/.dagster_home" NEUROSAM3D_HOME="$$PWD" \
		$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The MLflow UI on the embedded store (mlflow/mlflow.db), 127.0.0.1:5000.
mlflow-ui: install
	mlflow/serve.sh 5000

# Serve a registered model over REST on 127.0.0.1:$(SERVE_PORT) (default: the demo's @champion)
# in this project's environment, or (SERVE_ENV_MANAGER=uv) in a fresh one built by MLflow from
# the model's logged requirements.
SERVE_MODEL ?= models:/neurosam3d@champion
SERVE_PORT ?= 5001
SERVE_ENV_MANAGER ?= local
serve: install
	mlflow/serve-model.sh "$(SERVE_MODEL)" "$(SERVE_PORT)" "$(SERVE_ENV_MANAGER)"

# Forget every demo output (pipeline outputs, DVC cache and remote, MLflow store, Dagster runs);
# the committed dvc.lock stays (the record `dvc pull` restores from a remote).
clean-demo:
	rm -rf work data .dagster_home mlflow/mlflow.db mlflow/artifacts mlflow/locks .dvc-remote \
		.dvc/cache .dvc/tmp

# The same pipeline through DVC: samples/ into data/ (as the demo does), then `dvc repro`.
dvc-repro: install
	$(BIN)/python -m neurosam3d.demo --data-only
	NEUROSAM3D_HOME="$$PWD" PATH="$$PWD/$(BIN):$$PATH" $(BIN)/dvc repro

# The team deployment on this machine (README "Team deployment"): PostgreSQL, SeaweedFS (S3),
# Redis, the MLflow server, the Dagster webserver + daemon and two Celery workers, all on
# 127.0.0.1 with their data in .team/ (git-ignored); settings for clients in .team/env.
team-up: install
	deploy/team/up.sh

team-down:
	deploy/team/down.sh

# Stop the services and delete their data.
team-clean: team-down
	rm -rf .team

# The team check: team-up, the demo as daemon-launched Dagster runs (Celery executor), then a
# second clone that only has the team settings pulls the data and segments with @champion.
test-team: install
	$(BIN)/python -m pytest -q -m team tests/team
