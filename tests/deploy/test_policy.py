"""Policy over the rendered manifests of every overlay: what a restricted cluster (OpenShift restricted-v2,
Pod Security "restricted") admits, plus the product's own rules (secrets by reference, pinned images,
GPUs only where training runs, grace periods long enough for a training checkpoint)."""

from __future__ import annotations

import re

import pytest

from tests.deploy.rendered import OVERLAYS, arg_value, by_kind, containers, named, pod_spec, render, workloads
from workers.main import TRAINING_SUSPEND_BUDGET_S

GPU_WORKLOADS = {"flywheel-worker-gpu"}
SECRETISH = re.compile(r"(PASSWORD|SECRET|TOKEN|API_?KEY|CREDENTIAL|PRIVATE)", re.I)
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def _all(overlay: str):
    docs = render(overlay)
    for workload in workloads(docs):
        for container in containers(workload):
            yield workload, container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_non_root_without_privileges(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        pod = pod_spec(workload)
        pod_ctx = pod.get("securityContext", {})
        assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True
        assert pod_ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        # No fixed UID/GID: OpenShift assigns one from the namespace's range (the image works under any UID).
        assert "runAsUser" not in pod_ctx and "fsGroup" not in pod_ctx
        for container in containers(workload):
            ctx = container.get("securityContext", {})
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("privileged", False) is False, where
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not ctx.get("capabilities", {}).get("add"), where
            assert "runAsUser" not in ctx, where
            # Every container here writes only to its volumes (/data, /tmp), so the root is read-only.
            assert ctx.get("readOnlyRootFilesystem") is True, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_writable_paths_are_volumes(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        for container in containers(workload):
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{workload['metadata']['name']}: HOME and caches live in /tmp"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_requests_limits_and_probes(overlay: str) -> None:
    for workload, container in _all(overlay):
        where = f"{workload['metadata']['name']}/{container['name']}"
        resources = container.get("resources", {})
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(section, {})), f"{where}: {section}"
        assert container.get("readinessProbe") and container.get("livenessProbe"), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gpu_requests_only_on_gpu_workers(overlay: str) -> None:
    seen_gpu = False
    for workload, container in _all(overlay):
        name = workload["metadata"]["name"]
        resources = container.get("resources", {})
        gpus = {s: resources.get(s, {}).get("nvidia.com/gpu") for s in ("requests", "limits")}
        if name not in GPU_WORKLOADS:
            assert gpus == {"requests": None, "limits": None}, name
            assert "nodeSelector" not in pod_spec(workload) or "gpu" not in str(pod_spec(workload)["nodeSelector"])
        elif gpus["limits"] is not None:
            seen_gpu = True
            assert gpus["requests"] == gpus["limits"], "extended resources: requests must equal limits"
            assert "gpu" in str(pod_spec(workload)["nodeSelector"])
            assert any(t["key"] == "nvidia.com/gpu" for t in pod_spec(workload)["tolerations"])
    assert seen_gpu == (overlay != "dev"), "every overlay but dev requests GPUs for the gpu workers"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_literal_secret_values(overlay: str) -> None:
    docs = render(overlay)
    assert not by_kind(docs, "Secret"), "Secrets are created by the operator, referenced by name only"
    for _workload, container in _all(overlay):
        for env in container.get("env", []):
            if "value" in env:
                assert not SECRETISH.search(env["name"]), f"{env['name']} must come from a Secret"
                assert not URL_WITH_PASSWORD.search(str(env["value"])), env["name"]
        assert not container.get("envFrom") or all("configMapRef" not in e for e in container["envFrom"])
    for cm in by_kind(docs, "ConfigMap"):
        for text in cm["data"].values():
            assert not URL_WITH_PASSWORD.search(text)
            for line in text.splitlines():
                key = line.split(":", 1)[0].strip()
                if SECRETISH.search(key) and ":" in line:
                    assert key.endswith("_env") or key.endswith("_path"), f"{key} in config must name an env var"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_image_tags_pinned(overlay: str) -> None:
    for _workload, container in _all(overlay):
        image = container["image"]
        name, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
        assert "/" in name, f"{image}: a registry path, not a bare local name"
        assert tag and tag != "latest" and "/" not in tag, f"{image}: pin a tag or digest"
        assert container.get("imagePullPolicy") != "Always"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_least_privilege_service_account(overlay: str) -> None:
    docs = render(overlay)
    for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
        assert not by_kind(docs, kind)
    (sa,) = by_kind(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    for workload in workloads(docs):
        assert pod_spec(workload)["serviceAccountName"] == sa["metadata"]["name"]
        assert pod_spec(workload)["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_periods_cover_graceful_shutdown_and_training_suspend(overlay: str) -> None:
    docs = render(overlay)
    for workload in by_kind(docs, "Deployment"):
        name = workload["metadata"]["name"]
        if not name.startswith("flywheel-worker-"):
            continue
        (container,) = pod_spec(workload)["containers"]
        graceful = float(arg_value(container, "--graceful-shutdown-s"))
        grace = pod_spec(workload)["terminationGracePeriodSeconds"]
        # SIGKILL comes at the end of the grace period: the worker's own shutdown must fit inside it.
        assert grace >= graceful + 15, name
        if name in GPU_WORKLOADS:
            assert graceful >= TRAINING_SUSPEND_BUDGET_S, "the gpu worker must have time to checkpoint"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_and_api_spread(overlay: str) -> None:
    docs = render(overlay)
    pdbs = by_kind(docs, "PodDisruptionBudget")
    for workload in by_kind(docs, "Deployment"):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        if workload["metadata"]["name"] == "temporal-dev":
            continue
        covering = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, workload["metadata"]["name"]
        # Never minAvailable >= replicas floor on workers (a drain would hang); maxUnavailable keeps drains moving.
        if workload["metadata"]["name"].startswith("flywheel-worker-"):
            assert covering[0]["spec"].get("maxUnavailable") == 1
    api = named(docs, "Deployment", "flywheel-api")
    anti = pod_spec(api)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_real_endpoints(overlay: str) -> None:
    """Worker probes use the worker's --health-port; the API's probe its /health route."""
    for workload, container in _all(overlay):
        name = workload["metadata"]["name"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for probe_name in ("readinessProbe", "livenessProbe"):
            probe = container[probe_name]
            if "httpGet" not in probe:
                assert "tcpSocket" in probe and probe["tcpSocket"]["port"] in ports
                continue
            assert probe["httpGet"]["port"] in ports
            if name.startswith("flywheel-worker-"):
                assert int(arg_value(container, "--health-port")) == ports[probe["httpGet"]["port"]]
                expected_path = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}[probe_name]
                assert probe["httpGet"]["path"] == expected_path
            elif name == "flywheel-api":
                assert probe["httpGet"]["path"] == "/health"
