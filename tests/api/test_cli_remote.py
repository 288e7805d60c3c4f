"""`flywheel keys` and `flywheel remote`: the CLI authenticates to a served API with FLYWHEEL_API_KEY."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flywheel.config import load_settings
from starter.api import create_app
from starter.cli import app as cli
from tests.helpers.api import log_record
from tests.helpers.live_server import serve

runner = CliRunner()


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL__PLATFORM__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FLYWHEEL__TEMPORAL__ADDRESS", "127.0.0.1:1")  # ingest and auth need no Temporal
    settings = load_settings()
    with serve(create_app(settings)) as base_url:
        monkeypatch.setenv("FLYWHEEL_API_URL", base_url)
        yield base_url


def key_for(role: str) -> str:
    result = runner.invoke(cli, ["keys", "create", "--name", f"cli-{role}", "--role", role])
    assert result.exit_code == 0, result.output
    return result.output.split("FLYWHEEL_API_KEY=")[1].strip()


def test_keys_and_remote_calls(served, tmp_path, monkeypatch):
    operator, viewer = key_for("operator"), key_for("viewer")
    listing = runner.invoke(cli, ["keys", "list"]).output
    assert "cli-operator" in listing and operator not in listing

    monkeypatch.delenv("FLYWHEEL_API_KEY", raising=False)
    refused = runner.invoke(cli, ["remote", "list"])
    assert refused.exit_code == 1 and "401" in refused.output and "FLYWHEEL_API_KEY" in refused.output

    monkeypatch.setenv("FLYWHEEL_API_KEY", viewer)
    assert json.loads(runner.invoke(cli, ["remote", "list"]).output)["total"] == 0
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join([json.dumps(log_record(1)), "{broken", json.dumps(log_record(2))]) + "\n")
    args = ["remote", "load", str(path), "--workload-id", "wl", "--client-id", "cl"]
    denied = runner.invoke(cli, args)
    assert denied.exit_code == 1 and "403" in denied.output

    monkeypatch.setenv("FLYWHEEL_API_KEY", operator)
    loaded = runner.invoke(cli, args)
    assert loaded.exit_code == 0, loaded.output
    assert "line 2: bad_json" in loaded.output and "loaded 2, skipped 1 (0 already stored)" in loaded.output
    again = runner.invoke(cli, args)
    assert "loaded 0, skipped 1 (2 already stored)" in again.output and again.exit_code == 0

    assert runner.invoke(cli, ["keys", "revoke", "cli-operator"]).exit_code == 0
    assert runner.invoke(cli, args).exit_code == 1  # revoked: refused from the next request on
