#!/usr/bin/env bash
# Serve a registered model over REST (MLflow's scoring server) on 127.0.0.1.
# Usage: mlflow/serve-model.sh [MODEL_URI] [PORT] [ENV_MANAGER]
#   default models:/neurosam3d@champion on port 5001 in this project's environment; `make serve`
#   runs this (SERVE_MODEL, SERVE_PORT, SERVE_ENV_MANAGER).
# ENV_MANAGER `local` (default): the server runs in this project's virtual environment, whose
#   tools must be on PATH (the scoring server starts `uvicorn` by name).
# ENV_MANAGER `uv`: MLflow builds a fresh virtual environment from the model's logged
#   requirements (python_env.yaml, requirements.txt) with uv and serves from it; the package's
#   code comes from the model itself (its code_paths), not from this checkout. Environments are
#   kept under $MLFLOW_ENV_ROOT (MLflow's default ~/.mlflow/envs) and reused by later calls. The
#   CPU torch wheel is found in $PIP_FIND_LINKS (default /opt/wheels), as `make install` does.
# The tracking store is $MLFLOW_TRACKING_URI, else the embedded mlflow/mlflow.db.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-models:/neurosam3d@champion}"
PORT="${2:-5001}"
ENV_MANAGER="${3:-local}"
export PATH="$PWD/.venv/bin:$PATH"
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow/mlflow.db}"
case "$ENV_MANAGER" in
    local) ;;
    uv)
        export UV_FIND_LINKS="${UV_FIND_LINKS:-${PIP_FIND_LINKS:-/opt/wheels}}"
        # Out of the checkout: nothing of this project's code may be importable by accident.
        cd "${TMPDIR:-/tmp}"
        ;;
    *)
        echo "serve-model.sh: env manager '$ENV_MANAGER' unknown; use local or uv" >&2
        exit 2
        ;;
esac
exec mlflow models serve -m "$MODEL" --env-manager "$ENV_MANAGER" --host 127.0.0.1 \
    --port "$PORT" --workers 1
