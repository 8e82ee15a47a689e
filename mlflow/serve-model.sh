#!/usr/bin/env bash
# Serve a registered model over REST (MLflow's scoring server) on 127.0.0.1.
# Usage: mlflow/serve-model.sh [MODEL_URI] [PORT]
#   default models:/neurosam3d@champion on port 5001; `make serve` runs this.
# The tracking store is $MLFLOW_TRACKING_URI, else the embedded mlflow/mlflow.db. The server runs
# in this project's virtual environment (--env-manager local), whose tools must be on PATH: the
# scoring server starts `uvicorn` by name.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-models:/neurosam3d@champion}"
PORT="${2:-5001}"
export PATH="$PWD/.venv/bin:$PATH"
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow/mlflow.db}"
exec mlflow models serve -m "$MODEL" --env-manager local --host 127.0.0.1 --port "$PORT" --workers 1
