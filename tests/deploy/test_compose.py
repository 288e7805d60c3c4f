"""deploy/compose.yaml: the services a one-host install needs, credentials from the shell, and the
environment it gives the flywheel containers passes the product's own config validation."""

from __future__ import annotations

import re

import yaml

from flywheel.config import load_settings
from tests.deploy.rendered import REPO
from workers.main import TRAINING_SUSPEND_BUDGET_S

COMPOSE = REPO / "deploy" / "compose.yaml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _seconds(value: str) -> int:
    return int(value.removesuffix("s"))


def test_services_and_pinned_images() -> None:
    services = _compose()["services"]
    assert {"temporal", "elasticsearch", "mongodb", "minio", "api", "worker-orchestrator", "worker-cpu",
            "worker-gpu"} <= set(services)
    for name, service in services.items():
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), name


def test_flywheel_containers_get_a_valid_config_and_no_literal_secrets() -> None:
    services = _compose()["services"]
    for name in ("api", "worker-orchestrator", "worker-cpu", "worker-gpu"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", value), f"{name}: {key} must come from the shell"
        settings = load_settings(environ={k: v for k, v in env.items() if k.startswith("FLYWHEEL__")})
        assert settings.temporal.address == "temporal:7233"
        assert settings.logstore.kind == "elasticsearch" and settings.jobstore.kind == "mongo"
        if name.startswith("worker-"):
            assert services[name].get("read_only") is True
    secret = services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    assert secret.startswith("${MINIO_ROOT_PASSWORD:?")


def test_worker_stop_grace_covers_graceful_shutdown() -> None:
    services = _compose()["services"]
    for name in ("worker-orchestrator", "worker-cpu", "worker-gpu"):
        command = services[name]["command"]
        graceful = float(command[command.index("--graceful-shutdown-s") + 1])
        assert _seconds(services[name]["stop_grace_period"]) >= graceful + 15
        assert command[command.index("--queue") + 1] == name.removeprefix("worker-")
    gpu = services["worker-gpu"]["command"]
    assert float(gpu[gpu.index("--graceful-shutdown-s") + 1]) >= TRAINING_SUSPEND_BUDGET_S
