"""temporal config section → Client.connect keyword arguments (files read, keys from named env vars)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from flywheel.config import ConfigError, TemporalConfig, load_settings
from workers.temporal_auth import connect_kwargs, describe


def test_plain_connection_by_default() -> None:
    kwargs = connect_kwargs(TemporalConfig(address="temporal:7233", namespace="ns"), environ={})
    assert kwargs == {"target_host": "temporal:7233", "namespace": "ns", "tls": False}


def test_mutual_tls_reads_the_files(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_bytes(f"--{name}--".encode())
    temporal = TemporalConfig(tls={"server_ca_path": str(tmp_path / "ca.pem"),
                                   "client_cert_path": str(tmp_path / "client.pem"),
                                   "client_key_path": str(tmp_path / "client.key"),
                                   "server_name": "temporal.internal"})
    tls = connect_kwargs(temporal, environ={})["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.server_root_ca_cert == b"--ca.pem--"
    assert tls.client_cert == b"--client.pem--" and tls.client_private_key == b"--client.key--"
    assert tls.domain == "temporal.internal"


def test_api_key_comes_from_the_named_variable_and_implies_tls() -> None:
    temporal = TemporalConfig(address="ns.acct.tmprl.cloud:7233", api_key_env="MY_TEMPORAL_KEY")
    kwargs = connect_kwargs(temporal, environ={"MY_TEMPORAL_KEY": " k-123 \n"})
    assert kwargs["api_key"] == "k-123" and kwargs["tls"] is True
    assert "k-123" not in str(describe(temporal))


def test_unset_api_key_variable_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"temporal.api_key_env: environment variable MY_TEMPORAL_KEY is not set"):
        connect_kwargs(TemporalConfig(api_key_env="MY_TEMPORAL_KEY"), environ={})


def test_missing_certificate_file_names_the_field(tmp_path: Path) -> None:
    temporal = TemporalConfig(tls={"client_cert_path": str(tmp_path / "nope.pem"),
                                   "client_key_path": str(tmp_path / "nope.key")})
    with pytest.raises(ConfigError, match=r"temporal.tls.client_cert_path: cannot read .*nope.pem"):
        connect_kwargs(temporal, environ={})


def test_cert_without_key_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("temporal: {tls: {client_cert_path: /x.pem}}\n")
    with pytest.raises(ConfigError, match=r"temporal\.tls: .*client_cert_path and client_key_path"):
        load_settings(path=config, environ={})


def test_env_overrides_reach_the_tls_section() -> None:
    settings = load_settings(environ={"FLYWHEEL__TEMPORAL__TLS__ENABLED": "true",
                                      "FLYWHEEL__TEMPORAL__API_KEY_ENV": "TK"})
    assert settings.temporal.tls.enabled and settings.temporal.api_key_env == "TK"
    assert connect_kwargs(settings.temporal, environ={"TK": "x"})["tls"] is True
