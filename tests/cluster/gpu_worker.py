"""A gpu-queue host's worker in the cluster test: the real worker CLI (``python -m workers``) with a step audit.

    python -m tests.cluster.gpu_worker AUDIT_JSONL [worker options...]

The audit (tests/integration/gpu_worker_entry.install_step_audit) appends one line per trainer event to
``AUDIT_JSONL`` in this host's private directory: ``start`` (with ``resume_from``, the checkpoint step the
attempt resumed from), ``step`` (an optimizer step finished, its checkpoint, if due, already pushed to the
artifact store), ``finished``. The test reads it from outside to decide when to cut the host off, and to
count every training step that ran on any host. Everything else is the production worker.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.integration.gpu_worker_entry import install_step_audit
from workers.main import main

if __name__ == "__main__":
    install_step_audit(Path(sys.argv[1]))
    main(sys.argv[2:])
