"""A training run's durable state in the artifact store, so a retry on another host resumes it.

Under ``customizations/<name>/`` of the store:

* ``checkpoints/step-NNNNNN/<file>``: each complete checkpoint, pushed as soon as the trainer saved it,
  its ``COMPLETE`` manifest last (so a step without a manifest is an unfinished upload and ignored);
  older steps are removed after the newer one is complete (the trainer keeps the same number locally).
* ``adapter.gguf`` and ``result.json``: the finished adapter, and the result naming it by its store URI.

:func:`pull_newest_checkpoint` brings the newest complete remote checkpoint into a work dir that has
none (the trainer then verifies its sha256 manifest as for any local checkpoint).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from flywheel.artifacts import ArtifactNotFoundError, ArtifactStore
from flywheel.platforms.local import checkpoints as ckpts
from flywheel.types import CustomizationResult

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d{6})$")


def prefix(name: str) -> str:
    return f"customizations/{name}"


def push_checkpoint(store: ArtifactStore, name: str, checkpoint: ckpts.Checkpoint, *, keep: int = 2) -> None:
    base = f"{prefix(name)}/checkpoints/{checkpoint.path.name}"
    files = sorted(p for p in checkpoint.path.iterdir() if p.is_file() and p.name != ckpts.MANIFEST)
    for path in files:
        store.put(f"{base}/{path.name}", path)
    store.put(f"{base}/{ckpts.MANIFEST}", checkpoint.path / ckpts.MANIFEST)  # the commit record
    for step in remote_steps(store, name)[:-keep]:
        for info in list(store.list(f"{prefix(name)}/checkpoints/{ckpts.checkpoint_name(step)}")):
            store.delete(info.key)


def remote_steps(store: ArtifactStore, name: str) -> list[int]:
    """Steps with a complete (manifest-committed) checkpoint in the store, oldest first."""
    steps = set()
    for info in store.list(f"{prefix(name)}/checkpoints"):
        parts = info.key.split("/")
        match = _STEP_DIR.match(parts[-2])
        if match and parts[-1] == ckpts.MANIFEST:
            steps.add(int(match.group(1)))
    return sorted(steps)


def pull_newest_checkpoint(store: ArtifactStore, name: str, work_dir: Path) -> Path | None:
    """Download the newest remote checkpoint when ``work_dir`` holds none; its local path, or None."""
    root = Path(work_dir) / "checkpoints"
    if ckpts.find_newest(root, verify=False) is not None:
        return None
    steps = remote_steps(store, name)
    if not steps:
        return None
    dir_name = ckpts.checkpoint_name(steps[-1])
    tmp, final = root / f"{dir_name}.tmp", root / dir_name
    shutil.rmtree(tmp, ignore_errors=True)
    for info in store.list(f"{prefix(name)}/checkpoints/{dir_name}"):
        store.get(info.key, tmp / info.key.rsplit("/", 1)[-1])  # sha256-verified on the way
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    log.info("training %s: resuming from checkpoint %s pulled from %s", name, dir_name, store.root_uri)
    return final


def push_result(store: ArtifactStore, name: str, result: CustomizationResult) -> CustomizationResult:
    """Store the adapter and the result; the returned result names the adapter by its store URI."""
    adapter = store.put(f"{prefix(name)}/adapter.gguf", Path(result.adapter_uri))
    shared = result.model_copy(update={"adapter_uri": adapter.uri})
    store.put(f"{prefix(name)}/result.json", json.dumps(shared.model_dump(mode="json")).encode())
    return shared


def read_result(store: ArtifactStore, name: str) -> CustomizationResult | None:
    """A result another attempt (any host) finished and stored, if its adapter is there too."""
    try:
        result = CustomizationResult.model_validate_json(store.read_bytes(f"{prefix(name)}/result.json"))
    except ArtifactNotFoundError:
        return None
    return result if store.exists(result.adapter_uri) else None


def local_adapter(store: ArtifactStore, adapter_uri: str, cache_dir: Path) -> Path:
    """A store adapter as a local file (cached per sha256, so a redeploy downloads it once per host)."""
    info = store.stat(adapter_uri)
    path = Path(cache_dir) / info.sha256[:16] / Path(info.key).name
    if not path.is_file():
        store.get(info.key, path)
    return path
