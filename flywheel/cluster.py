"""Cluster mode: what differs when workers run on several hosts with no shared disk.

* :func:`serving_hosts`: the interface local model servers listen on and the address they advertise
  (other hosts must reach it; never a loopback address in a cluster).
* :func:`host_local`: a settings snapshot travels in workflow inputs from the host that started the run;
  the fields that describe *this* host (its private ``platform.data_dir`` and ``platform.root``, its
  ``cluster.advertise_host``/``bind_host``) are taken from this process's own environment instead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from flywheel.config import ENV_PREFIX, ConfigError, Settings, is_loopback_host

LOOPBACK = "127.0.0.1"

# Per-host fields: (section, field) whose FLYWHEEL__SECTION__FIELD value on this host wins over the snapshot.
HOST_LOCAL_FIELDS = (("platform", "data_dir"), ("platform", "root"),
                     ("cluster", "advertise_host"), ("cluster", "bind_host"))


def host_local(settings: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """``settings`` with this host's own values for :data:`HOST_LOCAL_FIELDS` (from its environment)."""
    environ = os.environ if environ is None else environ
    data = settings.model_dump(mode="json")
    changed = False
    for section, field in HOST_LOCAL_FIELDS:
        value = environ.get(f"{ENV_PREFIX}{section.upper()}__{field.upper()}")
        if value is not None and data[section].get(field) != (value or None):
            data[section][field] = value or None
            changed = True
    return Settings.model_validate(data) if changed else settings


def own_address(toward: str) -> str:
    """This host's source address on the route toward ``toward`` (``host:port``); no packet is sent."""
    host, _, port = toward.rpartition(":")
    host = host.strip("[]") or toward
    try:
        family = socket.getaddrinfo(host, int(port or 7233), type=socket.SOCK_DGRAM)[0]
        with socket.socket(family[0], socket.SOCK_DGRAM) as sock:
            sock.connect(family[4])  # UDP connect only picks the route
            return sock.getsockname()[0]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cluster.advertise_host: not set and this host's address toward {toward} cannot be "
                          f"determined ({exc}); set it") from exc


def serving_hosts(settings: Settings) -> tuple[str, str]:
    """``(bind_host, advertise_host)`` for local model servers: loopback on one host; in a cluster the
    configured (or detected, toward the Temporal frontend) address, refused when it is a loopback one."""
    cluster = settings.cluster
    if not cluster.active:
        return LOOPBACK, LOOPBACK
    advertise = cluster.advertise_host or own_address(settings.temporal.address)
    if is_loopback_host(advertise):
        raise ConfigError(f"cluster.advertise_host: {advertise} is a loopback address other hosts cannot reach "
                          f"(the route to temporal.address {settings.temporal.address} is local); set it")
    return cluster.bind_host, advertise
