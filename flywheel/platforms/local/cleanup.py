"""What a finished run left in the local platform's ``data_dir``, and removing it (DELETE of a job).

Under ``data_dir`` a run keeps, by its names (:class:`flywheel.removal.RunResources`): its splits in
``datasets/<name>/`` (and their staged copies in ``staging/datasets/<name>/``) for the run key and each
candidate's ICL set and mined triplets; each candidate's training work in ``customizations/<name>/``;
evaluation caches ``predictions/<eval>.jsonl`` (+ ``.judge.jsonl``, ``.scores.jsonl``) and ``embedding-evals/<eval>/``;
model-server logs ``deployments/<name>.log``; downloaded adapters ``adapters/<sha256[:16]>/``.
The artifact store's copies are removed by :mod:`flywheel.artifacts.run_removal`; servers still running
are stopped by the platform first. Nothing outside these exact names is touched.

These are caches of THIS host: in a cluster, other hosts' caches stay (they are rebuilt or unused).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from flywheel.artifacts import ArtifactNotFoundError, ArtifactStore
from flywheel.artifacts.datasets import SAFE_NAME
from flywheel.removal import RunResources


def run_paths(data_dir: Path, resources: RunResources) -> list[Path]:
    """The files and directories a run with these names may have created (existing or not)."""
    root = Path(data_dir)
    names = [n for n in resources.dataset_names() if SAFE_NAME.match(n)]
    paths = [root / "datasets" / n for n in names] + [root / "staging" / "datasets" / n for n in names]
    paths += [root / "customizations" / n for n in resources.customization_names() if SAFE_NAME.match(n)]
    for name in resources.evaluation_names():
        if SAFE_NAME.match(name):
            suffixes = (".jsonl", ".judge.jsonl", ".scores.jsonl")
            paths += [root / "predictions" / f"{name}{suffix}" for suffix in suffixes]
            paths.append(root / "embedding-evals" / name)
    paths += [root / "deployments" / f"{n}.log" for n in resources.deployment_names() if SAFE_NAME.match(n)]
    return paths


def adapter_cache_paths(data_dir: Path, store: ArtifactStore, resources: RunResources) -> list[Path]:
    """This host's downloaded copies of the run's adapters (cached by sha256), unless they stay promoted."""
    paths = []
    for name in resources.customization_names(kept=False):
        try:
            info = store.stat(f"customizations/{name}/adapter.gguf")
        except (ArtifactNotFoundError, ValueError):
            continue
        paths.append(Path(data_dir) / "adapters" / info.sha256[:16])
    return paths


def remove_paths(data_dir: Path, paths: list[Path]) -> list[str]:
    """Delete what exists of ``paths``; returns what was removed (relative to ``data_dir``)."""
    removed = []
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()
        else:
            continue
        removed.append(str(path.relative_to(data_dir)))
    return removed
