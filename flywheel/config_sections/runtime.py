"""Where and how the flywheel runs: the platform, its NeMo endpoints, the cluster, Temporal and the API."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from flywheel.activity_timeouts import ActivityTimeouts
from flywheel.config_sections.base import Section


class PlatformConfig(Section):
    kind: Literal["local", "nemo_v1", "nemo_v2"] = "local"
    data_dir: str = Field(".flywheel", description="This host's private working directory (caches, local state).")
    root: str | None = Field(
        None, description="Absolute directory every relative path (data_dir, store paths, key files) resolves "
                          "against; None: the process's working directory.")

    @field_validator("root")
    @classmethod
    def _absolute_root(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_absolute():
            raise ValueError(f"must be an absolute directory, got {value!r}")
        return value


class NMPConfig(Section):
    nemo_base_url: str = "http://localhost:8080"
    nim_base_url: str = "http://localhost:8000"
    datastore_base_url: str = "http://localhost:3000"
    nmp_namespace: str = "dfwbp"
    api_key_env: str | None = Field(None, description="Name of the env var holding the API key (never the key).")
    # Poll timing (None: the platform's default — nemo_v1 NemoV1Timing 10 s / 1800 s, nemo_v2 NemoV2Timing 2 s).
    poll_interval_s: float | None = Field(None, gt=0, description="Seconds between job/deployment status polls.")
    pending_timeout_s: float | None = Field(
        None, gt=0,
        description="nemo_v1: how long a job may stay created/pending before it is an infrastructure failure.")


class ClusterConfig(Section):
    """Several hosts, no shared disk: shared stores only, and model servers reachable from other hosts.

    ``enabled`` (or more than one entry in ``hosts``) turns cluster mode on: the SQLite stores and the
    default ``file://<data_dir>/artifacts`` root are refused at start, and local model servers listen on
    ``bind_host`` and advertise ``advertise_host`` (default: this host's address on the route to the
    Temporal frontend, never a loopback address).
    """

    enabled: bool = False
    hosts: list[str] = Field(default_factory=list, description="The cluster's hosts (informational; >1 = cluster).")
    advertise_host: str | None = Field(
        None, description="Address other hosts reach this host's model servers at; None: detected.")
    bind_host: str = Field("0.0.0.0", description="Interface model servers listen on in cluster mode.")

    @property
    def active(self) -> bool:
        return self.enabled or len(self.hosts) > 1


class TaskQueues(Section):
    orchestrator: str = "flywheel-orchestrator"
    cpu: str = "flywheel-cpu"
    gpu: str = "flywheel-gpu"


class TemporalTLS(Section):
    """TLS to the Temporal frontend. Files are read at connect time; their contents never enter config or logs."""

    enabled: bool = Field(False, description="Use TLS (implied by any path below and by temporal.api_key_env).")
    server_ca_path: str | None = Field(None, description="PEM CA bundle for the server (default: system CAs).")
    client_cert_path: str | None = Field(None, description="PEM client certificate for mutual TLS.")
    client_key_path: str | None = Field(None, description="PEM private key of the client certificate.")
    server_name: str | None = Field(None, description="Name to verify on the server certificate (SNI).")

    @model_validator(mode="after")
    def _cert_with_key(self) -> TemporalTLS:
        if bool(self.client_cert_path) != bool(self.client_key_path):
            raise ValueError("client_cert_path and client_key_path must be set together")
        return self

    @property
    def active(self) -> bool:
        return self.enabled or any((self.server_ca_path, self.client_cert_path, self.server_name))


class TemporalConfig(Section):
    address: str = "localhost:7233"
    namespace: str = "default"
    tls: TemporalTLS = TemporalTLS()
    api_key_env: str | None = Field(
        None, description="Name of the env var holding a Temporal Cloud API key (never the key); implies TLS.")
    task_queues: TaskQueues = TaskQueues()
    max_parallel_candidates: int = Field(2, ge=1)
    review_timeout_s: int = Field(7 * 24 * 3600, ge=0)
    ui_url: str | None = "http://localhost:8233"
    activity_timeouts: ActivityTimeouts | None = Field(
        None, description="Per-activity timeouts and heartbeat timeouts (seconds) of the runs this config starts; "
                          "None: the production defaults (flywheel/activity_timeouts.py).")


class APIConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
