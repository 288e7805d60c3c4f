"""Settings of one host of a cluster (private data_dir, shared stores) for the store-level cluster tests."""

from __future__ import annotations

from flywheel.config import Settings, validate_settings


def host_settings(tmp_path, name: str, artifacts: dict, address: str) -> Settings:
    return validate_settings({
        "platform": {"data_dir": str(tmp_path / name)}, "artifacts": artifacts,
        "logstore": {"kind": "elasticsearch"}, "jobstore": {"kind": "mongo"},
        "cluster": {"enabled": True, "advertise_host": address}})
