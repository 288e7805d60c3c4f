"""The config each overlay ships passes the product's own validation, as the pods will load it, and the
KEDA triggers scale each worker on the task queue that worker actually polls."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.config import ConfigError, load_settings
from tests.deploy.rendered import OVERLAYS, arg_value, by_kind, named, pod_spec, render

# Secret-sourced env vars cannot be resolved without a cluster; stand in with values of the right shape.
SECRET_STAND_INS = {"FLYWHEEL__LOGSTORE__URL": "http://elasticsearch.example:9200",
                    "FLYWHEEL__JOBSTORE__URL": "mongodb://user:pw@mongodb.example:27017"}


def _settings_for(overlay: str, deployment: str, tmp_path: Path):
    """Load settings the way the pod does: the mounted ConfigMap file plus the container's env overrides."""
    docs = render(overlay)
    workload = named(docs, "Deployment", deployment)
    pod = pod_spec(workload)
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    env.update({e["name"]: SECRET_STAND_INS[e["name"]] for e in container.get("env", []) if "valueFrom" in e})
    config_path = Path(env.pop("FLYWHEEL_CONFIG"))
    mount = next(m for m in container["volumeMounts"] if config_path.is_relative_to(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = named(docs, "ConfigMap", volume["configMap"]["name"])
    local = tmp_path / f"{overlay}-{deployment}.yaml"
    local.write_text(configmap["data"][str(config_path.relative_to(mount["mountPath"]))])
    return load_settings(path=local, environ=env), container, pod


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_loads_a_valid_config(overlay: str, tmp_path: Path) -> None:
    for workload in by_kind(render(overlay), "Deployment"):
        if workload["metadata"]["name"] == "temporal-dev":
            continue
        settings, container, _pod = _settings_for(overlay, workload["metadata"]["name"], tmp_path)
        assert settings.platform.data_dir == "/data"
        assert "/data" in {m["mountPath"] for m in container["volumeMounts"]}
        # TLS files named in the config are mounted into the pod.
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        for path in (settings.temporal.tls.server_ca_path, settings.temporal.tls.client_cert_path,
                     settings.temporal.tls.client_key_path):
            if path:
                assert any(Path(path).is_relative_to(m) for m in mounts), path
        if overlay != "dev":
            assert settings.temporal.tls.active, "production Temporal is reached over TLS"
            assert settings.logstore.kind == "elasticsearch" and settings.jobstore.kind == "mongo"


def test_the_validation_is_live(tmp_path: Path) -> None:
    """The same loader rejects a broken ConfigMap (a typo'd field), naming it."""
    configmap = by_kind(render("production"), "ConfigMap")[0]
    broken = tmp_path / "broken.yaml"
    broken.write_text(configmap["data"]["flywheel.yaml"].replace("namespace: flywheel", "namespaec: flywheel"))
    with pytest.raises(ConfigError, match=r"temporal\.namespaec"):
        load_settings(path=broken, environ={})


@pytest.mark.parametrize("overlay", ["production", "openshift", "istio"])
def test_keda_triggers_name_the_queues_the_config_names(overlay: str, tmp_path: Path) -> None:
    docs = render(overlay)
    scaled = by_kind(docs, "ScaledObject")
    assert {so["spec"]["scaleTargetRef"]["name"] for so in scaled} == {
        "flywheel-worker-orchestrator", "flywheel-worker-cpu", "flywheel-worker-gpu"}
    for so in scaled:
        target = so["spec"]["scaleTargetRef"]["name"]
        settings, container, _ = _settings_for(overlay, target, tmp_path)
        queue = arg_value(container, "--queue")
        meta = so["spec"]["triggers"][0]["metadata"]
        assert meta["taskQueue"] == getattr(settings.temporal.task_queues, queue)
        assert meta["namespace"] == settings.temporal.namespace
        assert meta["endpoint"] == settings.temporal.address
        if queue == "orchestrator":
            assert meta["queueTypes"] == "workflow" and so["spec"]["minReplicaCount"] >= 1
        else:
            assert meta["queueTypes"] == "activity" and so["spec"]["minReplicaCount"] == 0


def test_dev_temporal_address_is_the_in_cluster_service(tmp_path: Path) -> None:
    docs = render("dev")
    settings, _, _ = _settings_for("dev", "flywheel-worker-cpu", tmp_path)
    host, port = settings.temporal.address.split(":")
    service = named(docs, "Service", host)
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    assert settings.logstore.kind == settings.jobstore.kind == "sqlite"
