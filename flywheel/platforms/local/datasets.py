"""Datasets of the local platform: JSONL files under ``<data_dir>/datasets/<run_key>/<split>.jsonl``.

Writes are atomic (temp file + rename) and idempotent: storing the same rows again leaves the file
untouched and returns the same :class:`DatasetRef` (same sha256). Reads verify the hash recorded in
the ref, so a file changed after the run stored it is detected instead of silently evaluated.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from flywheel.types import DatasetRef, PlatformError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_name(kind: str, value: str) -> str:
    if not _SAFE_NAME.match(value or ""):
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
