"""What every settings section shares: the error type, the strict base model and the small checks."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """Invalid configuration; the message names the offending fields."""


class Section(BaseModel):
    # Unknown keys are errors: a typo in a field name must not be silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def is_loopback_host(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_var_name(value: str | None) -> str | None:
    """Secrets are configured by the NAME of the env var holding them, never the value."""
    if value is not None and not _ENV_NAME.fullmatch(value):
        raise ValueError(f"must be an environment variable name (letters, digits, _), got {value!r}")
    return value
