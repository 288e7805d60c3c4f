"""The ``security`` section of the settings: who may call the API, request limits, payload encryption.

Secrets never appear here: API keys live hashed in a key file, payload keys and nothing else are read
from environment variables whose NAMES are configured. Everything is off or closed by default:
no anonymous access, no CORS, no OIDC, no payload encryption.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OIDCConfig(_Strict):
    """Bearer JWTs from an OpenID Connect issuer, checked against the issuer's published keys (JWKS)."""

    issuer: str = Field(min_length=1, description="Expected 'iss' claim, e.g. https://idp.example.com/realms/x.")
    audience: str = Field(min_length=1, description="Expected 'aud' claim (the API's client id at the issuer).")
    jwks_url: str | None = Field(
        None, description="Where the signing keys are; default: <issuer>/.well-known/jwks.json.")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    roles_claim: str = Field("roles", description="Claim holding the roles; dots reach into objects "
                                                  "(e.g. realm_access.roles).")
    role_map: dict[str, str] = Field(
        default_factory=dict, description="Issuer role/group name -> flywheel role; unmapped names are used as is.")
    name_claim: str = Field("sub", description="Claim naming the principal (sub, email, preferred_username).")
    leeway_s: int = Field(30, ge=0, le=600, description="Clock skew tolerated on exp/nbf/iat.")

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        # A JWKS publishes public keys; an HS* algorithm would let anyone who knows them sign tokens.
        bad = [a for a in algorithms if not re.fullmatch(r"(RS|PS|ES)(256|384|512)|EdDSA", a)]
        if bad:
            raise ValueError(f"only asymmetric algorithms are allowed (got {', '.join(bad)})")
        return algorithms

    @property
    def keys_url(self) -> str:
        return self.jwks_url or self.issuer.rstrip("/") + "/.well-known/jwks.json"


class PayloadKeyRef(_Strict):
    """One key of the payload key ring: its id (stored with every payload) and the env var holding it."""

    id: str = Field(description="Key id written into each encrypted payload's metadata.")
    env: str = Field(description="Name of the env var holding the base64 of 32 random bytes (never the key).")

    @field_validator("id")
    @classmethod
    def _key_id(cls, value: str) -> str:
        if not _KEY_ID.match(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.', '-'")
        return value

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError("must be an environment variable NAME (letters, digits, '_')")
        return value


class PayloadEncryptionConfig(_Strict):
    """AES-GCM encryption of every Temporal payload (inputs, results, errors) with a key ring.

    Rotation without downtime: add the new key (every process can now decrypt it), then make it the
    ``encrypt_with`` key; old payloads stay readable as long as their key stays in the ring.
    """

    keys: list[PayloadKeyRef] = Field(min_length=1)
    encrypt_with: str | None = Field(None, description="Key id new payloads use; default: the last key listed.")
    codec_cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call /codec/* from a browser (the Temporal UI).")

    @model_validator(mode="after")
    def _known_key(self) -> PayloadEncryptionConfig:
        ids = [k.id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError(f"keys: duplicate key id in {ids}")
        if self.encrypt_with is not None and self.encrypt_with not in ids:
            raise ValueError(f"encrypt_with: {self.encrypt_with!r} is not one of the keys ({', '.join(ids)})")
        return self

    @property
    def active_key_id(self) -> str:
        return self.encrypt_with or self.keys[-1].id


class SecurityConfig(_Strict):
    api_keys_file: str | None = Field(
        None, description="JSON file of hashed API keys; default: <platform.data_dir>/api_keys.json.")
    anonymous_read: bool = Field(
        False, description="Let unauthenticated callers read (viewer role). Refused unless the API binds to "
                           "a loopback address, and then only for loopback peers.")
    oidc: OIDCConfig | None = None
    cors_origins: list[str] = Field(default_factory=list, description="Browser origins allowed to call the API.")
    max_body_bytes: int = Field(1024 * 1024, gt=0, description="Body limit of every route but the ones below.")
    max_ingest_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="Body limit of POST /api/logs.")
    max_codec_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="Body limit of /codec/*.")
    payload_encryption: PayloadEncryptionConfig | None = None

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, origins: list[str]) -> list[str]:
        if "*" in origins:
            raise ValueError("'*' is not allowed: name each origin (credentials are sent cross-origin)")
        return origins
