"""Test-only worker entry: the real worker assembly (workers.main) serving the GPU queue (the REAL ``customize``
activity → LocalPlatform → the peft trainer), in its own process so a test can SIGKILL / SIGTERM it mid-training.

``python -m tests.integration.gpu_worker_entry SETTINGS_JSON AUDIT_JSONL``

The only test addition is a step audit: ``flywheel.platforms.local.trainer.train`` is wrapped (in this process only)
so that every progress event the trainer emits is also appended, one JSON object per line, to ``AUDIT_JSONL``:

* ``{"event": "start", "resume_from": N, "checkpoint": ..., "pid", "attempt", "t"}`` — the trainer loaded its state
  (``resume_from`` = the step of the checkpoint it resumes from, 0 when fresh);
* ``{"event": "step", "step": N, "checkpoint": ..., "loss", "pid", "attempt", "t"}`` — optimizer step N completed
  (emitted by the trainer after the step and its checkpoint, if any, were written);
* ``{"event": "stop_requested", ...}`` — the platform's stop Event for this training was set (the activity saw
  its cancellation, or the worker began shutting down: ``LocalPlatform.customize`` / ``suspend``), within 0.1 s;
* ``{"event": "stopped", "step": N, "checkpoint": ..., "reason", ...}`` — ``TrainingStopped`` (suspend / cancel);
* ``{"event": "finished", "step": N, ...}``.

Each line is written with one ``write`` on a file opened for append, so it is in the kernel's page cache (and
survives a SIGKILL of this process) before the trainer goes on. ``t`` is wall-clock time (``time.time()``),
comparable with the test process's clock. Production code is untouched.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from flywheel.config import Settings
from workers.main import configure_logging, serve

GRACEFUL_SHUTDOWN_S = 120.0  # SIGTERM: the running step finishes and the checkpoint is written within this


def _attempt() -> int | None:
    from temporalio import activity

    try:
        return activity.info().attempt  # the thread runs in a copy of the activity's context
    except RuntimeError:
        return None


def install_step_audit(audit: Path) -> None:
    from flywheel.platforms.local import trainer

    real_train = trainer.train

    def write(record: dict[str, Any]) -> None:
        line = json.dumps({**record, "pid": os.getpid(), "t": time.time()}) + "\n"
        with audit.open("a") as handle:
            handle.write(line)

    def audited_train(spec: Any, *args: Any, progress: Any = None, **kwargs: Any) -> Any:
        attempt = _attempt()

        def record(event: dict[str, Any]) -> None:
            phase = event.get("phase")
            if phase == "loading":
                write({"event": "start", "resume_from": event.get("step"), "checkpoint": event.get("checkpoint"),
                       "attempt": attempt})
            elif phase == "training":
                write({"event": "step", "step": event["step"], "checkpoint": event.get("checkpoint"),
                       "loss": event.get("loss"), "attempt": attempt})
            elif phase == "finished":
                write({"event": "finished", "step": event.get("step"), "attempt": attempt})
            if progress is not None:
                progress(event)

        done = threading.Event()
        stop_event = getattr(kwargs.get("should_stop"), "__self__", None)  # LocalPlatform passes Event.is_set
        if isinstance(stop_event, threading.Event):
            def watch() -> None:
                while not done.is_set():
                    if stop_event.wait(0.1):
                        write({"event": "stop_requested", "attempt": attempt})
                        return

            threading.Thread(target=watch, name="stop-audit", daemon=True).start()
        try:
            return real_train(spec, *args, progress=record, **kwargs)
        except trainer.TrainingStopped as exc:
            write({"event": "stopped", "step": exc.step, "checkpoint": exc.checkpoint, "reason": exc.reason,
                   "attempt": attempt})
            raise
        finally:
            done.set()

    trainer.train = audited_train


def main() -> None:
    configure_logging("INFO")
    settings = Settings.model_validate_json(Path(sys.argv[1]).read_text())
    install_step_audit(Path(sys.argv[2]))
    asyncio.run(serve(settings, ["gpu"], ensure_attributes=False, gpu_slot_count=1,
                      graceful_shutdown_s=GRACEFUL_SHUTDOWN_S))


if __name__ == "__main__":
    main()
