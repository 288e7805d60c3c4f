"""Where the flywheel keeps things: the log store, the job store and the artifact root (S3 or a directory)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from flywheel.config_sections.base import Section, env_var_name


class StoreConfig(Section):
    kind: Literal["sqlite", "elasticsearch", "mongo"] = "sqlite"
    path: str | None = None
    url: str | None = None
    index_or_db: str | None = None


class MongoConfig(Section):
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
        return env_var_name(value)

    @field_validator("database", "collection")
    @classmethod
    def _mongo_name(cls, value: str) -> str:
        if not value or any(c in value for c in '/\\. "$\x00'):
            raise ValueError(f"invalid MongoDB name {value!r} (no '/', '\\', '.', ' ', '\"', '$')")
        return value


class ElasticsearchConfig(Section):
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
        return env_var_name(value)

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


class S3Settings(Section):
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
        return env_var_name(value)

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


class ArtifactsConfig(Section):
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
