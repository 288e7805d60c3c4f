"""Removing what a finished run created (DELETE of a job): its platform, the artifact store, MLflow."""

from __future__ import annotations

from temporalio import activity

from activities.common import get_platform, to_application_error
from flywheel.artifacts import open_artifact_store
from flywheel.cluster import host_local
from flywheel.removal import CandidateResources, RunResources
from flywheel.run_removal import remove_run
from workflows.models import ACT_REMOVE_RUN, RemoveRunInput, RemoveRunResult


def _resources(inp: RemoveRunInput) -> RunResources:
    """The input's names; an input from before ``resources`` existed carries only the keys."""
    if inp.resources is not None:
        return inp.resources
    return RunResources(job_id=inp.job_id, workflow_id=inp.run_key, run_key=inp.run_key,
                        candidates=[CandidateResources(model_name="", keys=list(inp.candidate_keys))])


@activity.defn(name=ACT_REMOVE_RUN)
async def remove_run_resources(inp: RemoveRunInput) -> RemoveRunResult:
    settings = host_local(inp.settings)
    try:
        report = await remove_run(get_platform(inp.settings), open_artifact_store(settings, remove_empty_dirs=True),
                                  settings.data_dir, settings.mlflow_config, _resources(inp))
    except Exception as exc:
        raise to_application_error(exc) from exc
    return RemoveRunResult(removed=report.removed_lines(), removed_by_kind=report.by_kind(),
                           kept=report.kept_lines())
