"""Every overlay renders with `kubectl kustomize` and every object is a valid Kubernetes object.

Built-in kinds are validated against the Kubernetes JSON schemas (kubernetes-validate, strict: unknown
fields are errors). KEDA, OpenShift and Istio kinds are CRDs those schemas do not carry: they are
checked structurally against the fields their operators read.
"""

from __future__ import annotations

from collections import Counter

import kubernetes_validate
import pytest

from tests.deploy.rendered import OVERLAYS, by_kind, named, pod_spec, render

K8S_VERSION = "1.30.0"  # the oldest Kubernetes these manifests promise to work on
CRD_GROUPS = ("keda.sh/", "route.openshift.io/", "networking.istio.io/", "security.istio.io/")

EXPECTED = {
    "dev": {"ServiceAccount": 1, "ConfigMap": 1, "Service": 2, "PersistentVolumeClaim": 1, "Deployment": 5,
            "PodDisruptionBudget": 4},
    "production": {"ServiceAccount": 1, "ConfigMap": 1, "Service": 1, "PersistentVolumeClaim": 1,
                   "Deployment": 4, "PodDisruptionBudget": 4, "ScaledObject": 3, "TriggerAuthentication": 1},
    "openshift": {"ServiceAccount": 1, "ConfigMap": 1, "Service": 1, "PersistentVolumeClaim": 1,
                  "Deployment": 4, "PodDisruptionBudget": 4, "ScaledObject": 3, "TriggerAuthentication": 1,
                  "Route": 1},
    "istio": {"ServiceAccount": 1, "ConfigMap": 1, "Service": 1, "PersistentVolumeClaim": 1, "Deployment": 4,
              "PodDisruptionBudget": 4, "ScaledObject": 3, "TriggerAuthentication": 1},
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_expected_objects(overlay: str) -> None:
    docs = render(overlay)
    assert Counter(d["kind"] for d in docs) == EXPECTED[overlay]
    namespaces = {d["metadata"].get("namespace") for d in docs}
    assert namespaces == {"flywheel-dev" if overlay == "dev" else "flywheel"}, namespaces


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_validate_against_kubernetes_schemas(overlay: str) -> None:
    checked = 0
    for doc in render(overlay):
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 12


def test_schema_validation_rejects_a_broken_object() -> None:
    """The validator is live: an unknown field in a Deployment is an error in strict mode."""
    deployment = dict(named(render("production"), "Deployment", "flywheel-api"))
    deployment["spec"] = {**deployment["spec"], "replicaz": 2}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def _deployment_names(docs) -> set[str]:
    return {d["metadata"]["name"] for d in by_kind(docs, "Deployment")}


@pytest.mark.parametrize("overlay", ["production", "openshift", "istio"])
def test_scaled_objects_are_well_formed(overlay: str) -> None:
    docs = render(overlay)
    auths = {d["metadata"]["name"] for d in by_kind(docs, "TriggerAuthentication")}
    for so in by_kind(docs, "ScaledObject"):
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        spec = so["spec"]
        assert set(spec) <= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
                             "cooldownPeriod", "triggers", "advanced", "fallback", "idleReplicaCount"}
        assert spec["scaleTargetRef"]["name"] in _deployment_names(docs)
        assert 0 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "temporal"
        meta = trigger["metadata"]
        assert {"endpoint", "namespace", "taskQueue", "targetQueueSize", "queueTypes"} <= set(meta)
        assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata values are strings"
        assert meta["queueTypes"] in {"workflow", "activity"}
        assert int(meta["targetQueueSize"]) >= 1
        assert trigger["authenticationRef"]["name"] in auths
    for auth in by_kind(docs, "TriggerAuthentication"):
        refs = auth["spec"]["secretTargetRef"]
        assert {r["parameter"] for r in refs} <= {"ca", "cert", "key", "apiKey", "keyPassword"}
        assert all(set(r) == {"parameter", "name", "key"} for r in refs)


def test_openshift_route_points_at_the_api_service() -> None:
    docs = render("openshift")
    (route,) = by_kind(docs, "Route")
    assert route["apiVersion"] == "route.openshift.io/v1"
    service = named(docs, "Service", route["spec"]["to"]["name"])
    assert route["spec"]["to"]["kind"] == "Service"
    assert route["spec"]["port"]["targetPort"] in {p["name"] for p in service["spec"]["ports"]}
    assert route["spec"]["tls"]["termination"] in {"edge", "reencrypt", "passthrough"}


def test_istio_pods_get_sidecars_and_bypass_database_ports() -> None:
    for deployment in by_kind(render("istio"), "Deployment"):
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["sidecar.istio.io/inject"] == "true"
        excluded = set(annotations["traffic.sidecar.istio.io/excludeOutboundPorts"].split(","))
        assert {"5432", "6379", "9200", "27017", "7233"} <= excluded
    for deployment in by_kind(render("production"), "Deployment"):
        assert "sidecar.istio.io/inject" not in deployment["spec"]["template"]["metadata"].get("annotations", {})


def test_dev_runs_its_own_temporal_and_needs_no_keda_or_gpu() -> None:
    docs = render("dev")
    assert not by_kind(docs, "ScaledObject")
    assert named(docs, "Service", "temporal-frontend")
    for deployment in by_kind(docs, "Deployment"):
        assert deployment["spec"]["replicas"] == 1
        for container in pod_spec(deployment)["containers"]:
            assert "nvidia.com/gpu" not in str(container.get("resources"))
