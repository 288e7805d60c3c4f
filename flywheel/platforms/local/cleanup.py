"""What a finished run left on the local platform, and removing it (DELETE of a job).

A run stores everything under names derived from its run keys (flywheel.ids.run_key): the splits in
``datasets/<run key>/``, each candidate's ICL dataset in ``datasets/<candidate key>-icl/`` and its
LoRA work (checkpoints, adapter) in ``customizations/<candidate key>-customize/``. Model servers are
stopped by the run's own teardown. Nothing outside ``data_dir`` is touched.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from flywheel.platforms.local.datasets import _check_name


def run_paths(data_dir: Path, run_key: str, candidate_keys: Sequence[str]) -> list[Path]:
    """The directories a run with these keys may have created (existing or not)."""
    root = Path(data_dir)
    paths = [root / "datasets" / _check_name("run key", run_key)]
    for key in candidate_keys:
        _check_name("candidate key", key)
        paths += [root / "datasets" / f"{key}-icl", root / "customizations" / f"{key}-customize"]
    return paths


def remove_run(data_dir: Path, run_key: str, candidate_keys: Sequence[str]) -> list[str]:
    """Delete what exists of :func:`run_paths`; returns what was removed (paths relative to ``data_dir``)."""
    removed = []
    for path in run_paths(data_dir, run_key, candidate_keys):
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(str(path.relative_to(data_dir)))
    return removed
