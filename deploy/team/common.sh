# Sourced by up.sh / down.sh: where the team services keep their data, and their ports.
# Every value can be overridden from the environment; everything binds 127.0.0.1.
# shellcheck shell=bash
PROJECT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TEAM_DIR="${NEUROSAM3D_TEAM_DIR:-$PROJECT/.team}"
BIN="$PROJECT/.venv/bin"
HOST=127.0.0.1
PG_PORT="${NEUROSAM3D_TEAM_PG_PORT:-15432}"
S3_PORT="${NEUROSAM3D_TEAM_S3_PORT:-18333}"
WEED_MASTER_PORT="${NEUROSAM3D_TEAM_WEED_MASTER_PORT:-19333}"
WEED_VOLUME_PORT="${NEUROSAM3D_TEAM_WEED_VOLUME_PORT:-18080}"
WEED_FILER_PORT="${NEUROSAM3D_TEAM_WEED_FILER_PORT:-18888}"
REDIS_PORT="${NEUROSAM3D_TEAM_REDIS_PORT:-16379}"
MLFLOW_PORT="${NEUROSAM3D_TEAM_MLFLOW_PORT:-15000}"
DAGSTER_PORT="${NEUROSAM3D_TEAM_DAGSTER_PORT:-13000}"
BUCKET="${NEUROSAM3D_TEAM_BUCKET:-neurosam3d}"
# Postgres refuses to run as root: the cluster runs as this (system) user when we are root.
PG_OS_USER="${NEUROSAM3D_TEAM_PG_OS_USER:-neurosam3d-pg}"
RUN_DIR="$TEAM_DIR/run"
LOG_DIR="$TEAM_DIR/logs"

# The PostgreSQL server programs (Debian: /usr/lib/postgresql/<major>/bin).
pg_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
    done
    command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v pg_ctl)"; return 0; }
    return 1
}

# Run a command as the Postgres OS user (ourselves unless we are root).
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        "$@"
    fi
}

# Is the service whose pid file is $1 running?
alive() {
    [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null
}

# Start "$@" in its own session (pid = process group id), logging to $LOG_DIR/$1.log.
start_service() {
    local name="$1"
    shift
    if alive "$name"; then
        echo "team: $name already running (pid $(cat "$RUN_DIR/$name.pid"))"
        return 0
    fi
    setsid "$@" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$name.pid"
    echo "team: $name started (pid $!, log ${LOG_DIR#"$PROJECT"/}/$name.log)"
}

# Wait until "$@" succeeds (up to $WAIT_S seconds, default 90), else show the log and fail.
wait_for() {
    local name="$1"
    shift
    local deadline=$((SECONDS + ${WAIT_S:-90}))
    until "$@" >/dev/null 2>&1; do
        if ! alive "$name" || [ "$SECONDS" -ge "$deadline" ]; then
            echo "team: $name did not become ready; last lines of its log:" >&2
            tail -n 30 "$LOG_DIR/$name.log" >&2 || true
            return 1
        fi
        sleep 1
    done
    echo "team: $name ready"
}
