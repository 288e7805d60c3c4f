"""Temporal connectivity from config: ``temporal`` section → ``Client.connect`` keyword arguments.

One place turns ``temporal.address``, ``temporal.namespace``, ``temporal.tls`` (CA, client certificate
and key by file path, server name) and ``temporal.api_key_env`` (the *name* of the environment variable
holding a Temporal Cloud API key) into the arguments of :meth:`temporalio.client.Client.connect`, so the
API, the workers and the CLI connect the same way::

    client = await Client.connect(**connect_kwargs(settings.temporal), data_converter=...)

Certificate files are read here, at connect time (a rotated Secret is picked up by the next
connection); their contents and the API key are never logged. A missing file or an unset variable
raises :class:`~flywheel.config.ConfigError` naming the field, before any connection is tried.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from temporalio.service import TLSConfig

from flywheel.config import ConfigError, TemporalConfig


def _read(field: str, path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"temporal.tls.{field}: cannot read {path}: {exc.strerror or exc}") from exc


def tls_config(temporal: TemporalConfig) -> TLSConfig | bool:
    """``TLSConfig`` when files or a server name are configured, ``True`` for TLS with system CAs, else ``False``."""
    tls = temporal.tls
    if not (tls.active or temporal.api_key_env):
        return False
    if not any((tls.server_ca_path, tls.client_cert_path, tls.server_name)):
        return True
    return TLSConfig(
        server_root_ca_cert=_read("server_ca_path", tls.server_ca_path),
        domain=tls.server_name,
        client_cert=_read("client_cert_path", tls.client_cert_path),
        client_private_key=_read("client_key_path", tls.client_key_path),
    )


def api_key(temporal: TemporalConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The API key from the variable ``temporal.api_key_env`` names; an unset or empty variable is an error."""
    if not temporal.api_key_env:
        return None
    value = (os.environ if environ is None else environ).get(temporal.api_key_env, "")
    if not value.strip():
        raise ConfigError(f"temporal.api_key_env: environment variable {temporal.api_key_env} is not set")
    return value.strip()


def connect_kwargs(temporal: TemporalConfig, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``target_host``, ``namespace``, ``tls`` and (when configured) ``api_key`` for ``Client.connect``."""
    kwargs: dict[str, Any] = {
        "target_host": temporal.address,
        "namespace": temporal.namespace,
        "tls": tls_config(temporal),
    }
    key = api_key(temporal, environ)
    if key is not None:
        kwargs["api_key"] = key
    return kwargs


def describe(temporal: TemporalConfig) -> dict[str, Any]:
    """What a log line may say about the connection: the address and which credentials are used, never them."""
    tls = temporal.tls
    return {
        "address": temporal.address,
        "namespace": temporal.namespace,
        "tls": bool(tls.active or temporal.api_key_env),
        "mtls": bool(tls.client_cert_path),
        "api_key_env": temporal.api_key_env,
    }
