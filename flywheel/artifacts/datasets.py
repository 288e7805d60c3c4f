"""Datasets as JSONL: staged under ``<dir>/datasets/<run_key>/<split>.jsonl`` and published to the artifact
store by :func:`put_split`. The local platform keeps all its datasets this way; every platform keeps an
``embedding_job``'s corpus snapshot, splits and triplets this way (the NeMo platforms upload copies for
their own jobs besides).

Writes are atomic (temp file + rename) and idempotent: storing the same rows again leaves the file
untouched and returns the same :class:`DatasetRef` (same sha256). Reads verify the hash recorded in
the ref, so a file changed after the run stored it is detected instead of silently evaluated.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from flywheel.artifacts import ArtifactIntegrityError, ArtifactNotFoundError, ArtifactStore
from flywheel.types import DatasetRef, PlatformError

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_name(kind: str, value: str) -> str:
    if not SAFE_NAME.match(value or ""):
        raise PlatformError(f"invalid dataset {kind} {value!r}: use letters, digits, '.', '_' and '-'",
                            retryable=False, error_type="InvalidDatasetName")
    return value


def uri_to_path(uri: str) -> Path:
    """``file:///abs/path`` or a plain path → Path."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme:
        raise PlatformError(f"the local platform reads file:// URIs only, got {uri!r}", retryable=False,
                            error_type="UnsupportedDatasetUri")
    return Path(uri)


def dataset_path(data_dir: Path, run_key: str, split: str) -> Path:
    return Path(data_dir) / "datasets" / _check_name("run key", run_key) / f"{_check_name('split', split)}.jsonl"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_split(data_dir: Path, run_key: str, split: str, rows: Iterable[dict[str, Any]]) -> DatasetRef:
    """Store ``rows`` as JSONL; a no-op when the file already holds exactly these rows."""
    path = dataset_path(data_dir, run_key, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    count = 0
    try:
        with tmp.open("wb") as out:
            for row in rows:
                line = (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
                out.write(line)
                digest.update(line)
                count += 1
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        if path.is_file() and _file_sha256(path) == sha:
            tmp.unlink()
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return DatasetRef(name=f"{run_key}-{split}", split=split, uri=path.resolve().as_uri(), num_records=count,
                      sha256=sha)


def write_splits(data_dir: Path, run_key: str,
                 splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
    return {split: write_split(data_dir, run_key, split, rows) for split, rows in splits.items()}


def read_rows(ref: DatasetRef) -> list[dict[str, Any]]:
    """The rows of a stored split; the file must still match ``ref.sha256`` (when set)."""
    path = uri_to_path(ref.uri)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PlatformError(f"dataset {ref.name!r} not found at {path}", retryable=False,
                            error_type="DatasetNotFound") from None
    if ref.sha256:
        actual = hashlib.sha256(data).hexdigest()
        if actual != ref.sha256:
            raise PlatformError(f"dataset {ref.name!r} at {path} changed since it was stored: sha256 expected "
                                f"{ref.sha256}, got {actual}", retryable=False, error_type="DatasetIntegrityError")
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    if len(rows) != ref.num_records:
        raise PlatformError(f"dataset {ref.name!r} has {len(rows)} rows, its reference says {ref.num_records}",
                            retryable=False, error_type="DatasetIntegrityError")
    return rows


# ---------------------------------------------------------------------- through the artifact store
# The same JSONL bytes and DatasetRef, kept under ``datasets/<run_key>/<split>.jsonl`` of the configured
# artifact store (file:// volume or s3:// bucket), so a worker on any host reads what another wrote.

def split_key(run_key: str, split: str) -> str:
    return f"datasets/{_check_name('run key', run_key)}/{_check_name('split', split)}.jsonl"


def put_split(store: ArtifactStore, scratch_dir: Path, run_key: str, split: str,
              rows: Iterable[dict[str, Any]]) -> DatasetRef:
    """Store ``rows``; a no-op (same ref) when the store already holds exactly these bytes."""
    key = split_key(run_key, split)
    local = write_split(scratch_dir, run_key, split, rows)  # staged on this host's disk, hashed once
    try:
        if store.stat(key).sha256 != local.sha256:
            store.put(key, uri_to_path(local.uri))
    except ArtifactNotFoundError:
        store.put(key, uri_to_path(local.uri))
    return local.model_copy(update={"uri": store.uri(key)})


def put_splits(store: ArtifactStore, scratch_dir: Path, run_key: str,
               splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
    return {split: put_split(store, scratch_dir, run_key, split, rows) for split, rows in splits.items()}


def _lines(chunks: Iterable[bytes]) -> Iterable[bytes]:
    pending = b""
    for chunk in chunks:
        *complete, pending = (pending + chunk).split(b"\n")
        yield from complete
    if pending:
        yield pending


def read_split(store: ArtifactStore, ref: DatasetRef) -> list[dict[str, Any]]:
    """Rows of a split in the store (streamed and sha256-checked); refs outside the store: :func:`read_rows`."""
    if not ref.uri.startswith(store.root_uri + "/"):
        return read_rows(ref)
    try:
        info = store.stat(ref.uri)
    except ArtifactNotFoundError:
        raise PlatformError(f"dataset {ref.name!r} not found at {ref.uri}", retryable=False,
                            error_type="DatasetNotFound") from None
    if ref.sha256 and info.sha256 != ref.sha256:
        raise PlatformError(f"dataset {ref.name!r} at {ref.uri} changed since it was stored: sha256 expected "
                            f"{ref.sha256}, got {info.sha256}", retryable=False, error_type="DatasetIntegrityError")
    try:
        rows = [json.loads(line) for line in _lines(store.iter_chunks(ref.uri)) if line.strip()]
    except ArtifactIntegrityError as exc:
        raise PlatformError(f"dataset {ref.name!r}: {exc}", retryable=False,
                            error_type="DatasetIntegrityError") from exc
    if len(rows) != ref.num_records:
        raise PlatformError(f"dataset {ref.name!r} has {len(rows)} rows, its reference says {ref.num_records}",
                            retryable=False, error_type="DatasetIntegrityError")
    return rows


class StoredDatasets:
    """Datasets kept in the artifact store by a platform whose own store is remote (the NeMo platforms keep an
    ``embedding_job``'s corpus snapshot, splits and triplets here, and upload what their jobs read besides)."""

    def __init__(self, store: ArtifactStore, scratch_dir: Path) -> None:
        self.store = store
        self.scratch_dir = Path(scratch_dir)

    def holds(self, ref: DatasetRef) -> bool:
        return ref.uri.startswith(self.store.root_uri + "/")

    async def put(self, run_key: str, splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
        return await asyncio.to_thread(put_splits, self.store, self.scratch_dir, run_key, splits)

    async def read(self, ref: DatasetRef) -> list[dict[str, Any]]:
        return await asyncio.to_thread(read_split, self.store, ref)
