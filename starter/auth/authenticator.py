"""Who is calling: API key or OIDC bearer token, else (only where allowed) anonymous read-only.

``Authenticator.from_settings`` refuses, at start, an anonymous read-only API bound to anything but a
loopback address; at request time anonymous access is also limited to loopback peers.
``require(permission)`` is the FastAPI dependency every route but /health uses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from flywheel.config import ConfigError, Settings
from starter.auth.api_keys import KeyFileError, KeyStore, looks_like_api_key
from starter.auth.roles import ANONYMOUS, Permission, Principal

log = structlog.get_logger("starter.auth")

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_keys_file(settings: Settings) -> Path:
    return Path(settings.security.api_keys_file or Path(settings.platform.data_dir) / "api_keys.json")


class AuthError(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class Authenticator:
    def __init__(self, keys: KeyStore, verifier: Any = None, anonymous_read: bool = False) -> None:
        self.keys = keys
        self.verifier = verifier  # JWTVerifier or None
        self.anonymous_read = anonymous_read

    @classmethod
    def from_settings(cls, settings: Settings, bind_host: str | None = None) -> Authenticator:
        sec = settings.security
        host = bind_host or settings.api.host
        if sec.anonymous_read and not is_loopback(host):
            raise ConfigError(
                f"security.anonymous_read: only allowed when the API binds to a loopback address (binds to {host})")
        verifier = None
        if sec.oidc is not None:
            from starter.auth.oidc import JWTVerifier

            verifier = JWTVerifier(sec.oidc)
        return cls(KeyStore(default_keys_file(settings)), verifier, anonymous_read=sec.anonymous_read)

    async def authenticate(self, token: str | None, peer_host: str | None) -> Principal:
        if not token:
            if self.anonymous_read and is_loopback(peer_host):
                return ANONYMOUS
            raise AuthError(401, "authentication required: send 'Authorization: Bearer <API key or token>'")
        if looks_like_api_key(token):
            try:
                principal = self.keys.verify(token)
            except KeyFileError as exc:
                log.error("api_key_file_unreadable", error=str(exc))
                raise AuthError(503, "API keys cannot be checked: the key file is unreadable") from exc
            if principal is None:
                raise AuthError(401, "invalid API key")
            return principal
        if self.verifier is None:
            raise AuthError(401, "invalid credentials: not an API key, and no OIDC issuer is configured")
        from starter.auth.oidc import IssuerUnavailableError, TokenError

        try:
            return await self.verifier.verify(token)
        except TokenError as exc:
            raise AuthError(401, str(exc)) from exc
        except IssuerUnavailableError as exc:
            log.warning("oidc_issuer_unavailable", error=str(exc))
            raise AuthError(503, str(exc)) from exc


# ---------------------------------------------------------------------------------------------- FastAPI

# Declared so the OpenAPI schema (and Swagger's "Authorize") shows how to authenticate.
_bearer = HTTPBearer(auto_error=False, description="An API key (fwk_...) or an OIDC access token.")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (fwk_...).")


def authenticator_of(request: Request) -> Authenticator:
    auth = getattr(request.app.state, "authenticator", None)
    if auth is None:  # never fall open
        raise HTTPException(503, "authentication is not configured")
    return auth


async def current_principal(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    api_key: str | None = Depends(_api_key_header),
) -> Principal:
    existing = getattr(request.state, "principal", None)
    if isinstance(existing, Principal):
        return existing
    token = bearer.credentials if bearer else api_key
    peer = request.client.host if request.client else None
    try:
        principal = await authenticator_of(request).authenticate(token, peer)
    except AuthError as exc:
        raise HTTPException(exc.status_code, exc.detail,
                            headers=_CHALLENGE if exc.status_code == 401 else None) from exc
    request.state.principal = principal
    return principal


def require(permission: Permission) -> Callable[..., Any]:
    """Dependency: the principal, if it holds ``permission`` (401 without credentials, 403 without the role)."""

    async def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.can(permission):
            roles = ", ".join(sorted(r.value for r in principal.roles)) or "none"
            raise HTTPException(403, f"{principal.label} (roles: {roles}) may not {permission.value}")
        return principal

    dependency.__name__ = f"require_{permission.value}"
    return dependency


def principal_headers(token: str) -> Mapping[str, str]:
    """The header a client sends (CLI, demo, tests)."""
    return {"Authorization": f"Bearer {token}"}
