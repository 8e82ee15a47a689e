#!/usr/bin/env bash
# Serve the MLflow UI for the embedded store (mlflow/mlflow.db + mlflow/artifacts/) on 127.0.0.1.
# Usage: mlflow/serve.sh [PORT]   (default 5000; `make mlflow-ui` runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-5000}"
mkdir -p mlflow/artifacts
# One worker and no job execution: ready in ~12 s with ~0.6 GB instead of 15 processes / 2.6 GB.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
exec .venv/bin/mlflow server \
    --backend-store-uri "sqlite:///$PWD/mlflow/mlflow.db" \
    --artifacts-destination "$PWD/mlflow/artifacts" \
    --host 127.0.0.1 --port "$PORT" --workers 1
