"""Authentication and roles of the starter API (API keys, OIDC bearer tokens, anonymous read-only)."""

from starter.auth.api_keys import KeyFileError, KeyStore
from starter.auth.authenticator import Authenticator, AuthError, current_principal, is_loopback, require
from starter.auth.roles import ANONYMOUS, Permission, Principal, Role

__all__ = [
    "ANONYMOUS", "AuthError", "Authenticator", "KeyFileError", "KeyStore", "Permission", "Principal", "Role",
    "current_principal", "is_loopback", "require",
]
