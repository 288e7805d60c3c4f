"""Settings: YAML (blueprint-compatible sections) + environment overrides, validated at start.

Load order (later wins): the packaged defaults in ``config/default.yaml``, the named config
``config/<config_name>.yaml`` (or an explicit path), then environment variables
``FLYWHEEL__<SECTION>__<FIELD>`` (double underscore separates nesting).
Invalid settings raise :class:`ConfigError` whose message names every offending field.

The sections live in :mod:`flywheel.config_sections` (one module per group); this module assembles them
into :class:`Settings`, loads them, and is the one import path for all of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from flywheel.config_sections.base import ConfigError, Section, is_loopback_host
from flywheel.config_sections.data import (
    CurationConfig,
    DataSplitConfig,
    EmbeddingConfig,
    ExampleSelection,
    ICLConfig,
    SimilarityConfig,
)
from flywheel.config_sections.evaluation import (
    GATE_METRICS,
    EvaluationConfig,
    GateConfig,
    MLflowConfig,
    PromotionConfig,
    ReferenceModelConfig,
)
from flywheel.config_sections.models import (
    CustomizerConfig,
    LLMJudgeConfig,
    LoRAConfig,
    ModelSource,
    NIMConfig,
    TrainingConfig,
)
from flywheel.config_sections.runtime import (
    APIConfig,
    ClusterConfig,
    NMPConfig,
    PlatformConfig,
    TaskQueues,
    TemporalConfig,
    TemporalTLS,
)
from flywheel.config_sections.stores import (
    ArtifactsConfig,
    ElasticsearchConfig,
    JobStoreConfig,
    LogStoreConfig,
    MongoConfig,
    S3Settings,
    StoreConfig,
)
from flywheel.retrieval.config import RetrievalConfig
from flywheel.security_config import SecurityConfig

__all__ = [
    "CONFIG_DIR", "ENV_PREFIX", "GATE_METRICS",
    "APIConfig", "ArtifactsConfig", "ClusterConfig", "ConfigError", "CurationConfig", "CustomizerConfig",
    "DataSplitConfig", "ElasticsearchConfig", "EmbeddingConfig", "EvaluationConfig", "ExampleSelection",
    "GateConfig", "ICLConfig", "JobStoreConfig", "LLMJudgeConfig", "LoRAConfig", "LogStoreConfig",
    "MLflowConfig", "ModelSource", "MongoConfig", "NIMConfig", "NMPConfig", "PlatformConfig",
    "PromotionConfig", "ReferenceModelConfig", "S3Settings", "Settings", "SimilarityConfig", "StoreConfig",
    "TaskQueues", "TemporalConfig", "TemporalTLS", "TrainingConfig",
    "available_config_names", "format_validation_error", "is_loopback_host", "load_settings",
    "validate_settings",
]

CONFIG_DIR = Path(os.environ.get("FLYWHEEL_CONFIG_DIR", Path(__file__).resolve().parent.parent / "config"))
ENV_PREFIX = "FLYWHEEL__"


class Settings(Section):
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
