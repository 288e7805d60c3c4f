"""OIDC bearer tokens: JWTs signed by the configured issuer, verified with PyJWT against its JWKS.

PyJWKClient fetches the issuer's key set, caches it, and fetches it again when a token names a key id
it has not seen (the issuer rotated its keys). Only asymmetric algorithms are accepted (see
``OIDCConfig``); ``exp``, ``iss``, ``aud`` and the name claim are required.
"""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
from jwt import PyJWKClient

from flywheel.security_config import OIDCConfig
from starter.auth.roles import Principal, parse_roles

JWKS_CACHE_S = 300
JWKS_TIMEOUT_S = 5
# An unknown key id refetches the key set at most this often: a flood of made-up kids cannot turn the
# API into a load generator against the issuer.
JWKS_REFRESH_COOLDOWN_S = 30.0


class TokenError(Exception):
    """The token is not acceptable (401); the message says why without echoing the token."""


class IssuerUnavailableError(Exception):
    """The issuer's key set could not be fetched (503)."""


def _claim(claims: dict[str, Any], path: str) -> Any:
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


class JWTVerifier:
    def __init__(self, config: OIDCConfig, *, refresh_cooldown_s: float = JWKS_REFRESH_COOLDOWN_S) -> None:
        self.config = config
        self._jwks = PyJWKClient(config.keys_url, cache_keys=True, lifespan=JWKS_CACHE_S, timeout=JWKS_TIMEOUT_S,
                                 cooldown_duration=refresh_cooldown_s)

    def verify_sync(self, token: str) -> Principal:
        cfg = self.config
        try:
            signing_key = self._jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise IssuerUnavailableError(f"cannot fetch the issuer's signing keys from {cfg.keys_url}") from exc
        except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
            raise TokenError(f"token not signed by a key of the issuer ({type(exc).__name__})") from exc
        try:
            claims = jwt.decode(
                token,
                signing_key.key,
                algorithms=cfg.algorithms,
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from exc
        name = _claim(claims, cfg.name_claim)
        if not isinstance(name, str) or not name:
            raise TokenError(f"invalid token: claim {cfg.name_claim!r} is missing")
        raw_roles = _claim(claims, cfg.roles_claim)
        if isinstance(raw_roles, str):
            raw_roles = raw_roles.split()
        if not isinstance(raw_roles, list):
            raw_roles = []
        mapped = [cfg.role_map.get(r, r) for r in raw_roles if isinstance(r, str)]
        return Principal(name=name[:200], roles=parse_roles(mapped), via="oidc")

    async def verify(self, token: str) -> Principal:
        # PyJWKClient fetches with urllib (blocking): keep it off the event loop.
        return await asyncio.to_thread(self.verify_sync, token)
