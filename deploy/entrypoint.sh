#!/bin/sh
# Role chooser for the flywheel image: the first argument (or FLYWHEEL_ROLE) picks what runs.
#   api [ARGS]           starter API on 0.0.0.0:8000 (python -m starter.serve)
#   worker [ARGS]        flywheel-worker (e.g. --queue cpu --health-port 8081)
#   temporal-dev [ARGS]  Temporal dev server on 0.0.0.0:7233, UI on 8233, history in $TEMPORAL_DB
#   flywheel [ARGS]      the flywheel CLI
#   healthcheck          exit 0 if the worker health endpoint (8081) or the API (8000) answers
#   anything else        run as a command
set -eu
role="${1:-${FLYWHEEL_ROLE:-api}}"
[ "$#" -gt 0 ] && shift
case "$role" in
  api)
    exec python -m starter.serve --host 0.0.0.0 --log-format json "$@" ;;
  worker)
    exec flywheel-worker "$@" ;;
  temporal-dev)
    exec temporal server start-dev --ip 0.0.0.0 --port 7233 --ui-port 8233 --ui-disable-news-fetch \
      --db-filename "${TEMPORAL_DB:-/data/temporal.db}" "$@" ;;
  flywheel)
    exec flywheel "$@" ;;
  healthcheck)
    exec python - <<'PY'
import os, sys, urllib.request
urls = [u for u in (os.environ.get("FLYWHEEL_HEALTHCHECK_URL"),) if u] or [
    "http://127.0.0.1:8081/healthz", "http://127.0.0.1:8000/health"]
for url in urls:
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:
            if resp.status == 200:
                sys.exit(0)
    except OSError:
        pass
sys.exit(1)
PY
    ;;
  *)
    exec "$role" "$@" ;;
esac
