#!/usr/bin/env bash
# The demo: a 3-node sandbox, a master in the background, the `web` service
# (bicycle/demo:1, 6 replicas), then `status`. Idempotent. `demo.sh stop` ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DIR=.sandbox
PIDFILE=$DIR/master.pid

master_alive() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if [ "${1:-}" = "stop" ]; then
    if master_alive; then
        kill "$(cat "$PIDFILE")"
        for _ in $(seq 50); do master_alive || break; sleep 0.1; done
    fi
    rm -f "$PIDFILE"
    $PY bicycle.py sandbox down --dir "$DIR"
    exit 0
fi

$PY bicycle.py sandbox up --nodes 3 --dir "$DIR"
if ! master_alive; then
    nohup $PY bicycle.py -i inventory.yml up >"$DIR/master.log" 2>&1 &
    echo $! > "$PIDFILE"
fi
for _ in $(seq 100); do
    $PY bicycle.py status >/dev/null 2>&1 && break
    master_alive || { echo "demo: the master died; see $DIR/master.log" >&2; tail -5 "$DIR/master.log" >&2; exit 1; }
    sleep 0.2
done
if ! $PY bicycle.py service ps web >/dev/null 2>&1; then
    $PY bicycle.py service create web --image bicycle/demo:1 --replicas 6
fi
echo
$PY bicycle.py status
cat <<MSG

The master runs in the background (pid $(cat "$PIDFILE"), log $DIR/master.log), API on 127.0.0.1:7070.
Dashboard: http://viewer:TOKEN@127.0.0.1:7070/ with the read token of $DIR/tokens.json
Try:  .venv/bin/python bicycle.py service scale web 9
      .venv/bin/python bicycle.py status --json
Stop everything:  make stop
MSG
