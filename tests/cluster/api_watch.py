"""The operator's machine of the cluster test: follows one job through the starter API only.

    python -m tests.cluster.api_watch API_URL JOB_ID OUT_JSONL TIMEOUT_S

Reads ``GET /api/jobs/{JOB_ID}`` every second with the product's own client (``starter.api_client``; the
key from ``FLYWHEEL_API_KEY``), appends each document whose status, stage, revision or live progress changed
to ``OUT_JSONL`` as one line ``{"t": <unix time>, "doc": ...}``, and exits 0 once the job has finished (the
last line is then the final document), 1 after ``TIMEOUT_S``. A failed request (the API restarting, a
timeout) is reported on stderr and retried: the API answering is part of what the test checks, not a
precondition.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from flywheel.jobdoc import JobDocument
from starter.api_client import ApiClient

POLL_S = 1.0


def main() -> int:
    url, job_id, out, timeout_s = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
    deadline = time.monotonic() + timeout_s
    last: str | None = None
    with ApiClient(url, timeout=30.0) as api:
        while time.monotonic() < deadline:
            try:
                raw = api.request("GET", f"/api/jobs/{job_id}")
            except Exception as exc:  # noqa: BLE001 - retried; the test fails on the timeout if it persists
                print(f"GET /api/jobs/{job_id}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                time.sleep(POLL_S)
                continue
            doc = JobDocument.model_validate(raw)  # the API answers the documented job shape
            seen = json.dumps(raw, sort_keys=True)
            if seen != last:
                with out.open("a") as fh:
                    fh.write(json.dumps({"t": time.time(), "doc": raw}) + "\n")
                last = seen
            if doc.status.finished:
                return 0
            time.sleep(POLL_S)
    print(f"job {job_id} did not finish within {timeout_s:.0f}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
