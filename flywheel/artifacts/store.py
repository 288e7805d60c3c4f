"""URI-addressed artifact store on obstore (Rust ``object_store``): ``file://`` volumes and ``s3://`` buckets.

Why obstore rather than fsspec/s3fs: one library gives both backends the same semantics: atomic
``put`` (a local write is staged and renamed; S3 uses one PUT or a multipart upload completed at the
end, so readers never see part of an object), streaming in both directions with bounded memory
(``chunk_size`` x ``max_concurrency``), retries and timeouts, and no aiobotocore pin fighting the
botocore other tools need.

Integrity: every artifact ``key`` has a sidecar ``key.sha256`` (``{"sha256", "size"}``) written after
the data is complete. The sidecar is the commit record: ``exists``/``list`` only show artifacts that
have one, a crash between the two writes leaves nothing visible, and every read hashes the bytes as
they stream and fails with :class:`ArtifactIntegrityError` when they differ from the sidecar.

Keys are relative (``datasets/<run>/eval.jsonl``) and resolve against the one configured root URI;
a full URI under that root is accepted too (so stored ``*_uri`` values can be read back).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import obstore
from obstore.exceptions import BaseError as ObstoreError

SIDECAR_SUFFIX = ".sha256"


class ArtifactError(RuntimeError):
    """An artifact could not be written, read or found."""


class ArtifactNotFoundError(ArtifactError, FileNotFoundError):
    pass


class ArtifactIntegrityError(ArtifactError):
    """The bytes read do not match the recorded sha256/size."""


class ArtifactKeyError(ArtifactError, ValueError):
    """A key that cannot name an artifact under the root."""


@dataclass(frozen=True)
class ArtifactInfo:
    key: str
    uri: str
    size: int
    sha256: str


Source = bytes | bytearray | memoryview | str | os.PathLike | IO[bytes] | Iterable[bytes]


class ArtifactStore:
    def __init__(self, root_uri: str, store: Any, *, chunk_size: int = 8 << 20, max_concurrency: int = 4) -> None:
        self.root_uri = root_uri.rstrip("/")
        self._store = store
        self.chunk_size = chunk_size
        self.max_concurrency = max_concurrency

    # ------------------------------------------------------------------ keys
    def key(self, key_or_uri: str) -> str:
        """The relative key for ``key_or_uri`` (validated: no absolute paths, ``..``, empty parts, sidecars)."""
        text = str(key_or_uri)
        if "://" in text:
            if not text.startswith(self.root_uri + "/"):
                raise ArtifactKeyError(f"{text} is not under the artifact root {self.root_uri}")
            text = text[len(self.root_uri) + 1:]
        parts = text.split("/")
        if not text or text.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in text:
            raise ArtifactKeyError(f"invalid artifact key {key_or_uri!r} (relative, '/'-separated, no '..')")
        if text.endswith(SIDECAR_SUFFIX):
            raise ArtifactKeyError(f"artifact keys may not end with {SIDECAR_SUFFIX} (reserved for checksums)")
        return text

    def uri(self, key: str) -> str:
        return f"{self.root_uri}/{self.key(key)}"

    # ------------------------------------------------------------------ write
    def put(self, key: str, source: Source) -> ArtifactInfo:
        """Write atomically from bytes, a local path, a binary file object or an iterable of chunks (streamed)."""
        key = self.key(key)
        digest = hashlib.sha256()
        size = 0

        def hashed(chunks: Iterable[bytes]) -> Iterator[bytes]:
            nonlocal size
            for chunk in chunks:
                if chunk:
                    digest.update(chunk)
                    size += len(chunk)
                    yield bytes(chunk)

        try:
            if isinstance(source, (bytes, bytearray, memoryview)):
                data = bytes(source)
                digest.update(data)
                size = len(data)
                obstore.put(self._store, key, data, use_multipart=False)
            elif isinstance(source, (str, os.PathLike)):
                with open(source, "rb") as handle:
                    self._put_stream(key, hashed(self._read_chunks(handle)))
            elif hasattr(source, "read"):
                self._put_stream(key, hashed(self._read_chunks(source)))  # type: ignore[arg-type]
            else:
                self._put_stream(key, hashed(source))  # type: ignore[arg-type]
            record = {"sha256": digest.hexdigest(), "size": size}
            obstore.put(self._store, key + SIDECAR_SUFFIX, json.dumps(record).encode(), use_multipart=False)
        except ObstoreError as exc:
            raise ArtifactError(f"cannot write {self.uri(key)}: {exc}") from exc
        return ArtifactInfo(key, self.uri(key), size, record["sha256"])

    def _put_stream(self, key: str, chunks: Iterator[bytes]) -> None:
        obstore.put(self._store, key, chunks, chunk_size=self.chunk_size, max_concurrency=self.max_concurrency)

    def _read_chunks(self, handle: IO[bytes]) -> Iterator[bytes]:
        while chunk := handle.read(self.chunk_size):
            yield chunk

    # ------------------------------------------------------------------ read
    def stat(self, key: str) -> ArtifactInfo:
        """Recorded size and sha256 of a committed artifact; :class:`ArtifactNotFoundError` otherwise."""
        key = self.key(key)
        try:
            record = json.loads(bytes(obstore.get(self._store, key + SIDECAR_SUFFIX).bytes()))
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"no artifact {self.uri(key)}") from None
        except ObstoreError as exc:
            raise ArtifactError(f"cannot read {self.uri(key)}: {exc}") from exc
        return ArtifactInfo(key, self.uri(key), int(record["size"]), str(record["sha256"]))

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        """Stream the bytes; after the last chunk the sha256 and size are checked (raises on mismatch)."""
        info = self.stat(key)
        digest = hashlib.sha256()
        size = 0
        try:
            result = obstore.get(self._store, info.key)
            for chunk in result.stream(min_chunk_size=self.chunk_size):
                data = bytes(chunk)
                digest.update(data)
                size += len(data)
                yield data
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"artifact {info.uri} has a checksum but no data") from None
        except ObstoreError as exc:
            raise ArtifactError(f"cannot read {info.uri}: {exc}") from exc
        if size != info.size or digest.hexdigest() != info.sha256:
            raise ArtifactIntegrityError(
                f"{info.uri}: read {size} bytes sha256 {digest.hexdigest()}, recorded {info.size} bytes {info.sha256}")

    def open(self, key: str) -> ArtifactReader:
        """A binary, read-only file object over the stream (verified when the end is reached)."""
        return ArtifactReader(self.iter_chunks(key))

    def get(self, key: str, dest: str | os.PathLike) -> ArtifactInfo:
        """Download to ``dest`` atomically: written beside it, verified, then renamed into place."""
        info = self.stat(key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_chunks(info.key):
                    out.write(chunk)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return info

    def read_bytes(self, key: str, *, max_bytes: int = 64 << 20) -> bytes:
        """Small artifacts only (manifests, reports): refuses anything over ``max_bytes``."""
        info = self.stat(key)
        if info.size > max_bytes:
            raise ArtifactError(f"{info.uri} is {info.size} bytes; stream it (open/iter_chunks/get) instead")
        return b"".join(self.iter_chunks(info.key))

    # ------------------------------------------------------------------ catalogue
    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ArtifactNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ArtifactInfo]:
        """Committed artifacts under ``prefix`` (a key prefix ending at a '/' boundary, or '' for all)."""
        prefix = self.key(prefix.rstrip("/")) if prefix.strip("/") else ""
        paths: set[str] = set()
        try:
            for batch in obstore.list(self._store, prefix=prefix or None):
                paths.update(meta["path"] for meta in batch)
        except ObstoreError as exc:
            raise ArtifactError(f"cannot list {self.root_uri}/{prefix}: {exc}") from exc
        for path in sorted(paths):
            if not path.endswith(SIDECAR_SUFFIX) and path + SIDECAR_SUFFIX in paths:
                yield self.stat(path)

    def delete(self, key: str) -> bool:
        """Remove an artifact (checksum first, so it stops being visible before the data goes)."""
        key = self.key(key)
        existed = self.exists(key)
        for path in (key + SIDECAR_SUFFIX, key):
            try:
                obstore.delete(self._store, path)
            except FileNotFoundError:
                pass
            except ObstoreError as exc:
                raise ArtifactError(f"cannot delete {self.uri(key)}: {exc}") from exc
        return existed

    def delete_prefix(self, prefix: str) -> list[str]:
        """Remove EVERY object under the directory ``prefix`` (whole path segments: ``a/b`` never matches
        ``a/bc/...``), committed or not (a data file an interrupted ``put`` left without its checksum
        goes too). Checksums first, so nothing half-deleted stays visible. Returns the keys removed
        (an artifact and its checksum count once)."""
        prefix = self.key(prefix.rstrip("/"))
        paths: set[str] = set()
        try:
            for batch in obstore.list(self._store, prefix=prefix):
                paths.update(meta["path"] for meta in batch)
        except ObstoreError as exc:
            raise ArtifactError(f"cannot list {self.root_uri}/{prefix}: {exc}") from exc
        ordered = sorted(paths, key=lambda p: (not p.endswith(SIDECAR_SUFFIX), p))
        for path in ordered:
            try:
                obstore.delete(self._store, path)
            except FileNotFoundError:
                pass
            except ObstoreError as exc:
                raise ArtifactError(f"cannot delete {self.root_uri}/{path}: {exc}") from exc
        return sorted({p.removesuffix(SIDECAR_SUFFIX) for p in paths})


class ArtifactReader:
    """Minimal ``io.RawIOBase``-like reader over verified chunks (``read``, iteration, context manager)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._done = False

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._buffer) < n):
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self._done = True
        take = len(self._buffer) if n < 0 else min(n, len(self._buffer))
        data = bytes(self._buffer[:take])
        del self._buffer[:take]
        return data

    def __iter__(self) -> Iterator[bytes]:
        if self._buffer:
            yield self.read(len(self._buffer))
        yield from self._chunks
        self._done = True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close:
            close()

    def __enter__(self) -> ArtifactReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
