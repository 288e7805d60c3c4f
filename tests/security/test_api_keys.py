"""API keys and roles: stored hashed, verified in constant time, created/revoked from the command line."""

from __future__ import annotations

import json
import stat

import pytest

from flywheel.config import ConfigError, load_settings
from starter.auth import Authenticator, AuthError, KeyStore, Permission, Principal, Role
from starter.auth.__main__ import main as keys_main
from starter.auth.roles import ANONYMOUS, ROLE_PERMISSIONS


def test_key_is_shown_once_and_only_its_digest_is_stored(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    token, stored = store.create("ci-bot", ["operator"])
    text = (tmp_path / "keys.json").read_text()
    secret = token.rsplit("_", 1)[1]
    assert token.startswith("fwk_") and len(secret) == 64
    assert token not in text and secret not in text
    assert stored.sha256 in text and json.loads(text)["keys"][0]["name"] == "ci-bot"
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
    principal = store.verify(token)
    assert principal == Principal(name="ci-bot", roles=frozenset({Role.operator}), via="api_key")
    assert principal.label == "api_key:ci-bot"


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-1] + ("a" if t[-1] != "a" else "b"),  # wrong secret, right id and shape
    lambda t: "fwk_000000000000_" + t.rsplit("_", 1)[1],  # unknown id
    lambda t: t + "x",  # bad shape
    lambda t: "",
])
def test_wrong_keys_are_refused(tmp_path, mutate):
    store = KeyStore(tmp_path / "keys.json")
    token, _ = store.create("a", ["viewer"])
    assert store.verify(mutate(token)) is None


def test_revocation_and_new_keys_apply_without_restart(tmp_path):
    running = KeyStore(tmp_path / "keys.json")  # the API's instance
    admin_cli = KeyStore(tmp_path / "keys.json")  # another process
    token, _ = admin_cli.create("temp", ["viewer"])
    assert running.verify(token) is not None
    assert admin_cli.revoke("temp") == 1
    assert running.verify(token) is None


def test_bad_names_and_roles_are_refused(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    with pytest.raises(ValueError, match="roles"):
        store.create("x", ["superuser"])
    with pytest.raises(ValueError, match="roles"):
        store.create("x", [])
    with pytest.raises(ValueError, match="name"):
        store.create("../x", ["viewer"])


def test_role_permissions():
    assert ROLE_PERMISSIONS[Role.viewer] == {Permission.read}
    assert Permission.operate in ROLE_PERMISSIONS[Role.operator]
    assert Permission.review not in ROLE_PERMISSIONS[Role.operator]
    assert Permission.operate not in ROLE_PERMISSIONS[Role.reviewer]
    assert ROLE_PERMISSIONS[Role.admin] == set(Permission)
    assert ANONYMOUS.permissions == {Permission.read}


def test_cli_creates_lists_revokes(tmp_path, capsys):
    path = tmp_path / "k.json"
    assert keys_main(["--keys-file", str(path), "create", "--name", "alice", "--role", "reviewer", "--quiet"]) == 0
    token = capsys.readouterr().out.strip()
    assert KeyStore(path).verify(token).roles == {Role.reviewer}
    assert keys_main(["--keys-file", str(path), "list"]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and "reviewer" in listing and token not in listing
    assert keys_main(["--keys-file", str(path), "revoke", "alice"]) == 0
    assert KeyStore(path).verify(token) is None
    with pytest.raises(SystemExit) as exit_:
        keys_main(["--keys-file", str(path), "create", "--name", "bob", "--role", "root"])
    assert exit_.value.code == 2


# ---------------------------------------------------------------------------------------------- authenticator


def _settings(tmp_path, **security):
    return load_settings(environ={}, overrides={"platform": {"data_dir": str(tmp_path)}, "security": security})


async def test_anonymous_read_only_when_enabled_and_loopback(tmp_path):
    closed = Authenticator.from_settings(_settings(tmp_path))
    with pytest.raises(AuthError) as err:
        await closed.authenticate(None, "127.0.0.1")
    assert err.value.status_code == 401
    open_ = Authenticator.from_settings(_settings(tmp_path, anonymous_read=True), bind_host="127.0.0.1")
    assert await open_.authenticate(None, "127.0.0.1") == ANONYMOUS
    assert await open_.authenticate(None, "::1") == ANONYMOUS
    with pytest.raises(AuthError):  # a non-loopback peer (e.g. through a port forward) gets nothing
        await open_.authenticate(None, "10.1.2.3")


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "api.example.com", "::"])
def test_anonymous_read_refused_at_start_on_non_loopback_bind(tmp_path, host):
    with pytest.raises(ConfigError, match=r"security\.anonymous_read"):
        Authenticator.from_settings(_settings(tmp_path, anonymous_read=True), bind_host=host)


async def test_keys_and_unknown_tokens(tmp_path):
    settings = _settings(tmp_path)
    auth = Authenticator.from_settings(settings)
    token, _ = auth.keys.create("ops", ["operator"])
    assert (await auth.authenticate(token, "10.0.0.1")).roles == {Role.operator}
    for bad in ("fwk_nope", "eyJhbGciOiJSUzI1NiJ9.e30.sig"):
        with pytest.raises(AuthError) as err:
            await auth.authenticate(bad, "127.0.0.1")
        assert err.value.status_code == 401


async def test_unreadable_key_file_is_503_not_open(tmp_path):
    settings = _settings(tmp_path)
    (tmp_path / "api_keys.json").write_text("{not json")
    auth = Authenticator.from_settings(settings)
    with pytest.raises(AuthError) as err:
        await auth.authenticate("fwk_0123456789ab_" + "a" * 64, "127.0.0.1")
    assert err.value.status_code == 503
