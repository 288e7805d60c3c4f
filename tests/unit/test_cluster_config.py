"""Cluster mode in config: single-host stores refused (naming the field), loopback addresses refused,
relative paths resolved against one root, and this host's own data_dir/addresses winning over a snapshot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flywheel.cluster import host_local, own_address, serving_hosts
from flywheel.config import ConfigError, Settings, load_settings, validate_settings
from flywheel.jobstore import default_jobstore_path

SHARED = {"logstore": {"kind": "elasticsearch"}, "jobstore": {"kind": "mongo"},
          "artifacts": {"root": "s3://bucket/flywheel"}}


def cluster(**extra) -> dict:
    return {**SHARED, "cluster": {"enabled": True, "advertise_host": "10.0.0.5"}, **extra}


@pytest.mark.parametrize("field, change", [
    ("logstore.kind", {"logstore": {"kind": "sqlite"}}),
    ("jobstore.kind", {"jobstore": {"kind": "sqlite"}}),
    ("artifacts.root", {"artifacts": {"root": None}}),
    ("cluster.advertise_host", {"cluster": {"enabled": True, "advertise_host": "127.0.0.1"}}),
])
def test_cluster_refuses_single_host_settings_naming_the_field(field, change):
    with pytest.raises(ConfigError) as err:
        validate_settings({**cluster(), **change})
    assert field in str(err.value)


def test_several_hosts_mean_cluster_mode_even_without_the_flag():
    with pytest.raises(ConfigError, match=r"jobstore.kind: sqlite"):
        load_settings(environ={"FLYWHEEL__CLUSTER__HOSTS": "[a, b]", "FLYWHEEL__LOGSTORE__KIND": "elasticsearch"})
    one_host = load_settings(environ={"FLYWHEEL__CLUSTER__HOSTS": "[a]"})
    assert not one_host.cluster.active and one_host.jobstore.kind == "sqlite"
    assert validate_settings({**SHARED, "cluster": {"hosts": ["a", "b"]}}).cluster.active


def test_relative_paths_resolve_against_the_configured_root(tmp_path):
    s = validate_settings({"platform": {"data_dir": "state", "root": str(tmp_path)},
                           "jobstore": {"path": "db/jobs.sqlite"}})
    assert s.data_dir == tmp_path / "state"
    assert default_jobstore_path(s) == tmp_path / "db" / "jobs.sqlite"
    assert s.resolve_path("/abs/x") == Path("/abs/x")
    # Without a root: the working directory, as before.
    assert validate_settings({"platform": {"data_dir": "state"}}).data_dir == Path(os.getcwd()) / "state"
    with pytest.raises(ConfigError, match=r"platform.root"):
        validate_settings({"platform": {"root": "relative/dir"}})


def test_default_artifact_root_is_under_the_resolved_data_dir(tmp_path):
    from flywheel.artifacts import artifact_root

    s = validate_settings({"platform": {"data_dir": "d", "root": str(tmp_path)}})
    assert artifact_root(s) == (tmp_path / "d" / "artifacts").as_uri()


def test_host_local_fields_come_from_this_hosts_environment():
    snapshot = validate_settings(cluster(platform={"data_dir": "/api-host/data"}))
    env = {"FLYWHEEL__PLATFORM__DATA_DIR": "/worker/data", "FLYWHEEL__CLUSTER__ADVERTISE_HOST": "10.0.0.9",
           "FLYWHEEL__JOBSTORE__KIND": "sqlite"}  # not a host-local field: the run's own setting stays
    local = host_local(snapshot, env)
    assert str(local.data_dir) == "/worker/data" and local.cluster.advertise_host == "10.0.0.9"
    assert local.jobstore.kind == "mongo" and local.artifacts.root == snapshot.artifacts.root
    assert host_local(snapshot, {}) is snapshot


def test_serving_hosts_loopback_alone_and_advertised_in_a_cluster():
    assert serving_hosts(Settings()) == ("127.0.0.1", "127.0.0.1")
    assert serving_hosts(validate_settings(cluster())) == ("0.0.0.0", "10.0.0.5")
    detected = validate_settings({**SHARED, "cluster": {"enabled": True},
                                  "temporal": {"address": "127.0.0.1:7233"}})
    with pytest.raises(ConfigError, match=r"cluster.advertise_host: 127.0.0.1 is a loopback"):
        serving_hosts(detected)


def test_own_address_is_the_source_address_toward_the_frontend():
    assert own_address("127.0.0.1:7233") == "127.0.0.1"
    with pytest.raises(ConfigError, match=r"cluster.advertise_host"):
        own_address("no-such-host.invalid:7233")
