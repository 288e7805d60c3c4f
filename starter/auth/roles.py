"""Roles, what each may do, and the principal a request runs as.

viewer reads; operator starts/cancels/deletes jobs, manages schedules and ingests logs; reviewer
promotes or rejects candidates; admin may do everything. Operator and reviewer are separate on
purpose: whoever starts runs should not be the one who approves their results (a person may hold both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Role(str, Enum):
    viewer = "viewer"
    operator = "operator"
    reviewer = "reviewer"
    admin = "admin"


class Permission(str, Enum):
    read = "read"  # job documents, lists, schedules
    operate = "operate"  # start/cancel/delete jobs, create/pause/trigger/delete schedules, ingest logs
    review = "review"  # promote / reject a run's candidates
    decode_payloads = "decode_payloads"  # /codec/*: see decrypted Temporal payloads
    administer = "administer"  # anything not listed for another permission (fail closed: admin only)


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.viewer: frozenset({Permission.read}),
    Role.operator: frozenset({Permission.read, Permission.operate, Permission.decode_payloads}),
    Role.reviewer: frozenset({Permission.read, Permission.review, Permission.decode_payloads}),
    Role.admin: frozenset(Permission),
}


def parse_roles(names: object) -> frozenset[Role]:
    """Known role names among ``names`` (a list or one string); unknown names are ignored, not errors,
    because an identity provider's claim usually carries roles of other applications too."""
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple, set, frozenset)):
        return frozenset()
    known = {r.value for r in Role}
    return frozenset(Role(n) for n in names if isinstance(n, str) and n in known)


@dataclass(frozen=True)
class Principal:
    """Who a request runs as. ``label`` is what the audit trail records (``api_key:ci-bot``, ``oidc:alice``)."""

    name: str
    roles: frozenset[Role]
    via: str  # "api_key" | "oidc" | "anonymous"
    permissions: frozenset[Permission] = field(init=False)

    def __post_init__(self) -> None:
        perms: set[Permission] = set()
        for role in self.roles:
            perms |= ROLE_PERMISSIONS[role]
        object.__setattr__(self, "permissions", frozenset(perms))

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def label(self) -> str:
        return self.via if self.via == "anonymous" else f"{self.via}:{self.name}"


ANONYMOUS = Principal(name="anonymous", roles=frozenset({Role.viewer}), via="anonymous")
