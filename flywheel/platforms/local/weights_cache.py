"""The trainer's dequantised base weights, shared through the artifact store.

Dequantising a GGUF for training (:mod:`flywheel.platforms.local.hf_model`) takes minutes on a CPU host and
is as large as the float32 model (1.07 GB for Gemma-3-270M). Each worker keeps it next to its GGUF; with an
artifact store the first worker that builds it also publishes it under
``weights-cache/<stem>-<sha256 of the GGUF, 16 hex>-transformers<version>/`` (the files, then ``COMPLETE``
last: a folder without it is an unfinished upload and ignored), and a worker on another host that has none
pulls it (sha256-verified) instead of dequantising again. The remote name comes from the GGUF's content
and the transformers version that produced the weights, never from a host's path or file times.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from flywheel.artifacts import ArtifactStore
from flywheel.platforms.local.weights import sha256_file

log = logging.getLogger(__name__)

PREFIX = "weights-cache"
COMPLETE = "COMPLETE"
WEIGHTS = "model.safetensors"  # what makes a local cache folder complete (hf_model writes it atomically)


def gguf_sha256(model_path: Path) -> str:
    """The GGUF's sha256, remembered beside it (``<file>.sha256``: size, mtime, digest) so a large file is
    hashed once per host, not once per training."""
    model_path = Path(model_path)
    stat = model_path.stat()
    stamp = f"{stat.st_size} {stat.st_mtime_ns}"
    memo = model_path.with_name(model_path.name + ".sha256")
    try:
        seen_stamp, digest = memo.read_text().rsplit(" ", 1)
        if seen_stamp == stamp and len(digest) == 64:
            return digest
    except (OSError, ValueError):
        pass
    digest = sha256_file(model_path)
    try:
        memo.write_text(f"{stamp} {digest}")
    except OSError:  # a read-only model directory: hash again next time
        pass
    return digest


def remote_prefix(model_path: Path) -> str:
    import transformers  # the dequantised weights are what this version of transformers made of the GGUF

    return f"{PREFIX}/{Path(model_path).stem}-{gguf_sha256(model_path)[:16]}-transformers{transformers.__version__}"


def pull(store: ArtifactStore, model_path: Path, local_dir: Path) -> bool:
    """Fill ``local_dir`` from the store when it is empty here and complete there; True when pulled."""
    local_dir = Path(local_dir)
    if (local_dir / WEIGHTS).is_file():
        return False
    prefix = remote_prefix(model_path)
    if not store.exists(f"{prefix}/{COMPLETE}"):
        return False
    tmp = local_dir.with_name(local_dir.name + f".pull-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for info in store.list(prefix):
            name = info.key[len(prefix) + 1:]
            if name != COMPLETE and "/" not in name:
                store.get(info.key, tmp / name)
        if not (tmp / WEIGHTS).is_file():
            return False
        local_dir.parent.mkdir(parents=True, exist_ok=True)
        if (local_dir / WEIGHTS).is_file():  # another process on this host finished first
            return False
        shutil.rmtree(local_dir, ignore_errors=True)
        os.replace(tmp, local_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("dequantised weights for %s pulled from %s/%s", model_path.name, store.root_uri, prefix)
    return True


def push(store: ArtifactStore, model_path: Path, local_dir: Path) -> bool:
    """Publish a complete local cache unless the store already has one; True when pushed."""
    local_dir = Path(local_dir)
    if not (local_dir / WEIGHTS).is_file():
        return False
    prefix = remote_prefix(model_path)
    if store.exists(f"{prefix}/{COMPLETE}"):
        return False
    files = sorted(p for p in local_dir.iterdir() if p.is_file())
    for path in files:
        store.put(f"{prefix}/{path.name}", path)
    store.put(f"{prefix}/{COMPLETE}", "\n".join(p.name for p in files).encode())  # the commit record, last
    log.info("dequantised weights for %s published to %s/%s", model_path.name, store.root_uri, prefix)
    return True
