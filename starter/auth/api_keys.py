"""API keys: random tokens shown once, stored only as SHA-256 digests in a JSON key file.

A key looks like ``fwk_<id>_<secret>``: the id (public, 12 hex) finds the entry, the secret is 32
random bytes. SHA-256 without salt or stretching is enough here, unlike for passwords: stretching
(bcrypt, argon2) only slows down guessing of LOW-entropy secrets, and nobody can enumerate 2^256
secrets however fast the hash is; a salt defends against precomputed tables, which need guessable
inputs too. A fast digest also keeps every request cheap. Digests are compared in constant time.

The file is re-read when it changes, so a key created or revoked while the API runs takes effect
on the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starter.auth.roles import Principal, Role, parse_roles

KEY_PREFIX = "fwk_"
_KEY_RE = re.compile(r"^fwk_([0-9a-f]{12})_([0-9a-f]{64})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class KeyFileError(ValueError):
    """The key file cannot be read or has a bad entry (the message names the file and the entry)."""


def looks_like_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredKey:
    id: str
    name: str
    roles: frozenset[Role]
    sha256: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "roles": sorted(r.value for r in self.roles),
                "sha256": self.sha256, "created_at": self.created_at}


def _entry(raw: Any, path: Path, position: int) -> StoredKey:
    try:
        roles = parse_roles(raw["roles"])
        key = StoredKey(id=str(raw["id"]), name=str(raw["name"]), roles=roles, sha256=str(raw["sha256"]),
                        created_at=str(raw.get("created_at", "")))
    except (KeyError, TypeError) as exc:
        raise KeyFileError(f"{path}: keys[{position}] is missing {exc}") from exc
    if not roles or not re.fullmatch(r"[0-9a-f]{64}", key.sha256):
        raise KeyFileError(f"{path}: keys[{position}] ({key.name}) needs known roles and a sha256 digest")
    return key


class KeyStore:
    """The key file. Thread-safe; reloads when the file's modification time or size changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, StoredKey] = {}

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def keys(self) -> dict[str, StoredKey]:
        stamp = self._file_stamp()
        with self._lock:
            if stamp != self._stamp:
                self._keys = self._read() if stamp is not None else {}
                self._stamp = stamp
            return self._keys

    def _read(self) -> dict[str, StoredKey]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"{self.path}: cannot read the key file ({type(exc).__name__})") from exc
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise KeyFileError(f"{self.path}: expected an object with a 'keys' list")
        keys = [_entry(raw, self.path, i) for i, raw in enumerate(entries)]
        return {k.id: k for k in keys}

    def verify(self, token: str) -> Principal | None:
        """The principal of a valid key, None for anything else (unknown id, wrong secret, bad shape)."""
        match = _KEY_RE.match(token)
        if not match:
            return None
        stored = self.keys().get(match.group(1))
        if stored is None or not hmac.compare_digest(stored.sha256, digest(token)):
            return None
        return Principal(name=stored.name, roles=stored.roles, via="api_key")

    # ------------------------------------------------------------------------------------ changes

    def create(self, name: str, roles: list[Role] | list[str]) -> tuple[str, StoredKey]:
        """A new key: returns the token (the only time it exists in clear) and its stored entry."""
        if not _NAME_RE.match(name):
            raise ValueError("name: 1-64 letters, digits, '_', '.', '@', '-'")
        names = [r.value if isinstance(r, Role) else str(r) for r in roles]
        parsed = parse_roles(names)
        if not names or {r.value for r in parsed} != set(names):
            raise ValueError(f"roles: each must be one of {', '.join(r.value for r in Role)} (got {names})")
        key_id = secrets.token_hex(6)
        token = f"{KEY_PREFIX}{key_id}_{secrets.token_hex(32)}"
        stored = StoredKey(id=key_id, name=name, roles=parsed, sha256=digest(token),
                           created_at=datetime.now(UTC).isoformat(timespec="seconds"))
        self._write({**self.keys(), key_id: stored})
        return token, stored

    def revoke(self, key_id_or_name: str) -> int:
        keys = self.keys()
        kept = {i: k for i, k in keys.items() if key_id_or_name not in (k.id, k.name)}
        self._write(kept)
        return len(keys) - len(kept)

    def _write(self, keys: dict[str, StoredKey]) -> None:
        """Atomically, readable by the owner only (the digests are not secrets, but nobody else needs them)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"keys": [k.to_json() for k in keys.values()]}, indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".api_keys.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            self._stamp = None  # re-read on next use
