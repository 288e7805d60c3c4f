"""Artifact store: everything a run writes, addressed by URI under one configured root (see ``store``)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flywheel.artifacts.store import (
    ArtifactError,
    ArtifactInfo,
    ArtifactIntegrityError,
    ArtifactKeyError,
    ArtifactNotFoundError,
    ArtifactReader,
    ArtifactStore,
)
from flywheel.config import ArtifactsConfig, ConfigError, Settings

__all__ = [
    "ArtifactError",
    "ArtifactInfo",
    "ArtifactIntegrityError",
    "ArtifactKeyError",
    "ArtifactNotFoundError",
    "ArtifactReader",
    "ArtifactStore",
    "artifact_root",
    "open_artifact_store",
]


def artifact_root(settings: Settings) -> str:
    """The configured root URI, or ``file://<data_dir>/artifacts`` (absolute) by default."""
    if settings.artifacts.root:
        return settings.artifacts.root
    return (settings.data_dir.resolve() / "artifacts").as_uri()


def _env_secret(environ: Any, field: str, name: str | None) -> str | None:
    if not name:
        return None
    value = environ.get(name)
    if not value:
        raise ConfigError(f"artifacts.s3.{field}: environment variable {name} is not set")
    return value


def _s3_store(root: str, cfg: ArtifactsConfig, environ: Any) -> Any:
    from obstore.store import S3Store

    parts = urlsplit(root)
    s3 = cfg.s3
    config: dict[str, Any] = {"region": s3.region, "virtual_hosted_style_request": s3.virtual_hosted_style}
    if s3.endpoint_url:
        config["endpoint"] = s3.endpoint_url
    for key, field, name in (("access_key_id", "access_key_id_env", s3.access_key_id_env),
                             ("secret_access_key", "secret_access_key_env", s3.secret_access_key_env),
                             ("session_token", "session_token_env", s3.session_token_env)):
        value = _env_secret(environ, field, name)
        if value:
            config[key] = value
    client: dict[str, Any] = {"timeout": f"{cfg.timeout_s}s", "connect_timeout": f"{cfg.connect_timeout_s}s",
                              "allow_http": bool(s3.endpoint_url and s3.endpoint_url.startswith("http://"))}
    if s3.ca_bundle:
        client["root_certificate"] = s3.ca_bundle
    retry = {"max_retries": cfg.max_retries, "retry_timeout": timedelta(seconds=cfg.timeout_s * (cfg.max_retries + 1)),
             "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=15), "base": 2}}
    return S3Store(parts.netloc, prefix=parts.path.strip("/") or None, config=config, client_options=client,
                   retry_config=retry)


def open_artifact_store(settings: Settings, environ: Any = None, *, remove_empty_dirs: bool = False) -> ArtifactStore:
    """The configured store. ``remove_empty_dirs`` (``file://`` only): a delete also removes the directories
    it leaves empty (used by DELETE of a job; writers keep the default so they never race a removal)."""
    from obstore.store import LocalStore

    cfg = settings.artifacts
    root = artifact_root(settings)
    parts = urlsplit(root)
    if parts.scheme == "s3":
        store = _s3_store(root, cfg, os.environ if environ is None else environ)
    else:
        store = LocalStore(prefix=parts.path, mkdir=True, automatic_cleanup=remove_empty_dirs)
    return ArtifactStore(root, store, chunk_size=cfg.chunk_size_mib << 20, max_concurrency=cfg.max_concurrency)
