"""Test-only worker entry: the real worker assembly (workers.main) with the REAL activities on the cpu queue.

``python -m tests.integration.flywheel_activity_worker SETTINGS_JSON`` — the settings (``platform.kind`` =
nemo_v1 pointing at the contract emulator, or nemo_v2) come from the file. The workflows run in the test
process; this process only runs activities, so the test can SIGKILL it mid-activity and start another.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from flywheel.config import Settings
from workers.main import configure_logging, serve


def main() -> None:
    configure_logging("WARNING")
    settings = Settings.model_validate_json(Path(sys.argv[1]).read_text())
    # nemo_v1/nemo_v2 train on the cpu queue (CandidateRun routes customize there for non-local platforms).
    asyncio.run(serve(settings, ["cpu"], ensure_attributes=False, graceful_shutdown_s=0))


if __name__ == "__main__":
    main()
