"""Atomic training checkpoints on durable disk.

Layout under ``<work_dir>/checkpoints``::

    step-000005/            a COMPLETE checkpoint (the only kind :func:`find_newest` returns)
        adapter.safetensors   trainable (LoRA) weights
        optimizer.pt          optimizer state
        scheduler.pt          LR scheduler state
        rng.pt                python / numpy / torch (+ cuda) RNG states
        state.json            step, epoch, position in the epoch's shuffled order, shuffle seed,
                              total steps, loss history, config fingerprint
        COMPLETE              manifest {file: size, sha256} - written last, inside the .tmp dir
    step-000010.tmp/        a checkpoint being written (ignored; removed by the next save)

A checkpoint is written into ``step-N.tmp``, every file fsync'ed, the manifest written last, then
the directory is renamed to ``step-N`` (atomic on POSIX) and the parent fsync'ed. A crash at any
point leaves either the previous complete checkpoint set or the new one, never a half-written
``step-N``. :func:`find_newest` also checks file sizes against the manifest, and :func:`load`
verifies the sha256 sums, so a checkpoint damaged after the fact (disk trouble, a tampered file)
is skipped in favour of the next older one.

This module is torch-agnostic: callers hand it ``writers`` (file name → function writing that
file) and read files back themselves, so it is unit-tested without a model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "COMPLETE"
STATE = "state.json"
_NAME = re.compile(r"^step-(\d{6,})$")
_TMP = re.compile(r"^step-(\d{6,})\.tmp$")


class CheckpointError(Exception):
    """A checkpoint directory is incomplete or damaged."""


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    state: dict[str, Any]

    @property
    def uri(self) -> str:
        """Absolute path of the checkpoint directory (what heartbeats carry)."""
        return str(self.path.resolve())


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def save(root: Path, step: int, state: Mapping[str, Any],
         writers: Mapping[str, Callable[[Path], None]], *, keep: int = 2) -> Checkpoint:
    """Write checkpoint ``step`` atomically under ``root`` and prune to the newest ``keep``.

    ``writers`` maps a file name to a function that writes that file at the given path.
    ``state`` (JSON-able) is stored as ``state.json`` with ``step`` added. Saving a step that
    already has a complete checkpoint is a no-op returning the existing one.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    if final.is_dir():
        try:
            return _read(final, verify=False)
        except CheckpointError:
            log.warning("replacing damaged checkpoint %s", final)
            shutil.rmtree(final)
    tmp = root / (checkpoint_name(step) + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    full_state = {**dict(state), "step": step}
    for name, write in writers.items():
        if name in (MANIFEST, STATE) or "/" in name:
            raise ValueError(f"reserved or invalid checkpoint file name {name!r}")
        write(tmp / name)
    (tmp / STATE).write_text(json.dumps(full_state, indent=1, sort_keys=True))
    manifest: dict[str, Any] = {"step": step, "files": {}}
    for path in sorted(tmp.iterdir()):
        _fsync_file(path)
        manifest["files"][path.name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    _fsync_file(tmp / MANIFEST)
    _fsync_dir(tmp)
    os.replace(tmp, final)
    _fsync_dir(root)
    prune(root, keep=keep)
    return Checkpoint(step=step, path=final, state=full_state)


def _read(path: Path, *, verify: bool) -> Checkpoint:
    match = _NAME.match(path.name)
    if not match or not path.is_dir():
        raise CheckpointError(f"{path} is not a checkpoint directory")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: missing or unreadable manifest ({exc})") from exc
    if STATE not in files:
        raise CheckpointError(f"{path}: manifest lists no {STATE}")
    for name, meta in files.items():
        file = path / name
        try:
            size = file.stat().st_size
        except OSError as exc:
            raise CheckpointError(f"{path}: {name} is missing") from exc
        if size != meta.get("size"):
            raise CheckpointError(f"{path}: {name} has {size} bytes, manifest says {meta.get('size')}")
        if verify and _sha256(file) != meta.get("sha256"):
            raise CheckpointError(f"{path}: {name} fails its sha256 check")
    try:
        state = json.loads((path / STATE).read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path}: {STATE} is not JSON") from exc
    step = int(match.group(1))
    if state.get("step") != step:
        raise CheckpointError(f"{path}: state says step {state.get('step')}, directory says {step}")
    return Checkpoint(step=step, path=path, state=state)


def list_complete(root: Path) -> list[Checkpoint]:
    """Complete checkpoints (manifest present, sizes match), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if not _NAME.match(path.name):
            continue
        try:
            found.append(_read(path, verify=False))
        except CheckpointError as exc:
            log.warning("ignoring checkpoint: %s", exc)
    return sorted(found, key=lambda c: c.step)


def find_newest(root: Path, *, verify: bool = True) -> Checkpoint | None:
    """The newest complete checkpoint, or None. With ``verify`` the files' sha256 sums are
    checked too; a damaged newest checkpoint falls back to the next older complete one."""
    for ckpt in reversed(list_complete(root)):
        if not verify:
            return ckpt
        try:
            return _read(ckpt.path, verify=True)
        except CheckpointError as exc:
            log.warning("skipping damaged checkpoint: %s", exc)
    return None


def prune(root: Path, *, keep: int = 2) -> list[Path]:
    """Remove leftover ``.tmp`` dirs, damaged checkpoint dirs and all but the newest ``keep``
    complete checkpoints. Returns what was removed."""
    root = Path(root)
    removed: list[Path] = []
    complete = list_complete(root)
    complete_paths = {c.path for c in complete}
    for path in root.iterdir() if root.is_dir() else []:
        if _TMP.match(path.name) or (_NAME.match(path.name) and path not in complete_paths):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    for ckpt in complete[:-keep] if keep > 0 else complete:
        shutil.rmtree(ckpt.path, ignore_errors=True)
        removed.append(ckpt.path)
    return removed
