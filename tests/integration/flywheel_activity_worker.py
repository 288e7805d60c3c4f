"""Test-only worker entry: the real worker assembly (workers.main) with the REAL activities on the cpu queue.

``python -m tests.integration.flywheel_activity_worker SETTINGS_JSON [QUEUES]`` — the settings (``platform.kind``
= nemo_v1 pointing at the contract emulator, or nemo_v2) come from the file. ``QUEUES`` is a comma-separated list
of queue roles, ``cpu`` by default: then the workflows run in the test process and this process only runs
activities, so the test can SIGKILL it mid-activity and start another. The chaos test passes
``orchestrator,cpu``: workflows and activities both die with the process, as in a rolling deploy.

With ``FLYWHEEL_WORKER_STANDBY=PATH`` the process imports everything and builds the platform, creates ``PATH``
and waits for a line on stdin before it connects: a replacement started ahead (like a surge pod in a rolling
deploy), so a test measures Temporal's recovery rather than the interpreter's start-up.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from activities.common import get_platform
from flywheel.config import Settings
from workers.main import configure_logging, serve


def main() -> None:
    configure_logging("WARNING")
    settings = Settings.model_validate_json(Path(sys.argv[1]).read_text())
    queues = sys.argv[2].split(",") if len(sys.argv) > 2 else ["cpu"]
    if standby := os.environ.get("FLYWHEEL_WORKER_STANDBY"):
        get_platform(settings)  # built now, not by the first activity (which could not heartbeat meanwhile)
        Path(standby).touch()
        sys.stdin.readline()
    # nemo_v1/nemo_v2 train on the cpu queue (CandidateRun routes customize there for non-local platforms).
    graceful_s = float(os.environ.get("FLYWHEEL_WORKER_GRACEFUL_S", "0"))
    asyncio.run(serve(settings, queues, ensure_attributes=False, graceful_shutdown_s=graceful_s))


if __name__ == "__main__":
    main()
