"""Removing a finished run's objects from the artifact store (DELETE of a job), on any platform.

The keys a run writes (docs/stores.md, "What is kept there") are derived from its names
(:class:`flywheel.removal.RunResources`), so removal is exact:

* whole directories: ``datasets/<name>/`` for the run's splits, each candidate's ICL set and mined
  triplets; ``customizations/<cand>-customize/`` (checkpoints, adapter, result); ``reports/<job id>/``;
* single keys: ``predictions/<cand>-<eval type>.jsonl`` (+ ``.judge.jsonl``, ``.scores.jsonl``) and
  ``deployments/<deployment>.json``.

A directory is matched by whole path segments, so ``datasets/run-1/`` never reaches ``datasets/run-10/``.
The promoted candidate's fine-tuned adapter (``adapter.gguf`` + ``result.json``) stays when it was promoted
on its customized evaluation; its checkpoints go.
"""

from __future__ import annotations

from flywheel.artifacts.store import ArtifactStore
from flywheel.removal import ARTIFACT, CUSTOMIZED_MODEL, PROMOTED, RemovalReport, RunResources

# What a finished training leaves in customizations/<name>/ (flywheel.platforms.local.work_sync).
ADAPTER_FILES = ("adapter.gguf", "result.json")


def run_directories(resources: RunResources) -> list[str]:
    dirs = [f"datasets/{name}" for name in resources.dataset_names()]
    dirs += [f"customizations/{name}" for name in resources.customization_names(kept=False)]
    dirs += [f"customizations/{name}/checkpoints" for name in resources.customization_names(kept=True)]
    return [*dirs, f"reports/{resources.job_id}"]


def run_keys(resources: RunResources) -> list[str]:
    keys = [f"predictions/{name}{suffix}" for name in resources.evaluation_names()
            for suffix in (".jsonl", ".judge.jsonl", ".scores.jsonl")]
    return keys + [f"deployments/{name}.json" for name in resources.deployment_names()]


def _valid(store: ArtifactStore, key: str) -> bool:
    """A name that cannot be a key (a workflow id with characters no key allows) was never written."""
    try:
        store.key(key)
    except ValueError:
        return False
    return True


def remove_run_artifacts(store: ArtifactStore, resources: RunResources) -> RemovalReport:
    report = RemovalReport()
    for directory in run_directories(resources):
        if _valid(store, directory):
            report.remove(ARTIFACT, store.delete_prefix(directory))
    for key in run_keys(resources):
        if _valid(store, key) and store.delete(key):
            report.remove(ARTIFACT, key)
    for name in resources.customization_names(kept=True):
        for file in ADAPTER_FILES:
            key = f"customizations/{name}/{file}"
            if _valid(store, key) and store.exists(key):
                report.keep(CUSTOMIZED_MODEL, store.uri(key), PROMOTED)
    return report
