#!/usr/bin/env bash
# `make team-down`: stop what `make team-up` started, by process group, newest first; the data
# in .team/ stays (`make team-clean` deletes it).
set -euo pipefail
# shellcheck source=deploy/team/common.sh
source "$(dirname "$0")/common.sh"

stop_service() {
    local name="$1" pid
    [ -f "$RUN_DIR/$name.pid" ] || return 0
    pid="$(cat "$RUN_DIR/$name.pid")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "team: $name stopped"
    fi
    rm -f "$RUN_DIR/$name.pid"
}

for name in celery-worker-2 celery-worker-1 dagster-webserver dagster-daemon mlflow redis seaweedfs; do
    stop_service "$name"
done
if [ -f "$TEAM_DIR/postgres/PG_VERSION" ] && PGBIN="$(pg_bin)"; then
    if as_pg "$PGBIN/pg_ctl" -D "$TEAM_DIR/postgres" status >/dev/null 2>&1; then
        as_pg "$PGBIN/pg_ctl" -D "$TEAM_DIR/postgres" -m fast -w stop >/dev/null
        echo "team: postgres stopped"
    fi
fi
