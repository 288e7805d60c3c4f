"""Test-only worker entry: the real worker assembly (workers.main) with fake activities.

``python -m tests.workflow.fake_worker SETTINGS_JSON`` — used by the kill/restart durability test.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from flywheel.config import Settings
from tests.workflow.fakes import FAKE_ACTIVITIES
from workers.main import configure_logging, serve


def main() -> None:
    configure_logging("WARNING")
    settings = Settings.model_validate_json(Path(sys.argv[1]).read_text())
    asyncio.run(serve(settings, ["orchestrator", "cpu", "gpu"], ensure_attributes=False,
                      cpu_activities=FAKE_ACTIVITIES, gpu_activities=FAKE_ACTIVITIES, gpu_slot_count=1,
                      graceful_shutdown_s=0, sticky_queue_schedule_to_start_timeout=timedelta(seconds=1)))


if __name__ == "__main__":
    main()
