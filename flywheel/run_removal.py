"""DELETE of a finished job: remove everything its run created, in an order that a retry can resume.

1. The platform (:meth:`~flywheel.platforms.base.Platform.remove_run`): deployments left running, datasets,
   jobs, models, this host's files. First, because the local platform reads deployment records and adapter
   checksums from the artifact store.
2. The artifact store (:mod:`flywheel.artifacts.run_removal`), on every platform (reports are stored there
   whatever the platform), and this host's report scratch copy ``<data_dir>/reports/<job id>/``.
3. MLflow (:func:`flywheel.tracking.remove_job_runs`) when it is enabled.

Every step deletes by exact names and tolerates what is already gone, so a retried activity after a
partial removal finishes the rest and lists only what it removed itself.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from flywheel.artifacts import ArtifactStore
from flywheel.artifacts.run_removal import remove_run_artifacts
from flywheel.config import MLflowConfig
from flywheel.ids import is_safe_key
from flywheel.platforms.base import Platform
from flywheel.removal import DATA_DIR, RemovalReport, RunResources
from flywheel.tracking import remove_job_runs


def remove_report_scratch(data_dir: Path, job_id: str) -> list[str]:
    path = Path(data_dir) / "reports" / job_id
    if not is_safe_key(job_id) or not path.is_dir():
        return []
    shutil.rmtree(path)
    return [str(path.relative_to(data_dir))]


async def remove_run(platform: Platform, store: ArtifactStore, data_dir: Path, mlflow: MLflowConfig,
                     resources: RunResources) -> RemovalReport:
    report = await platform.remove_run(resources)
    report.extend(await asyncio.to_thread(remove_run_artifacts, store, resources))
    report.remove(DATA_DIR, await asyncio.to_thread(remove_report_scratch, data_dir, resources.job_id))
    return report.extend(await asyncio.to_thread(remove_job_runs, resources.job_id, resources.workload_id,
                                                 resources.client_id, mlflow))
