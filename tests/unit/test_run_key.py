"""flywheel.ids: the run key every run name derives from, model slugs, and the shared id checks (ingest, CLI)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flywheel.ids import RUN_KEY_MAX, InvalidId, check_id, model_slug, run_key
from flywheel.ingest import ingest_records
from flywheel.logstore.sqlite import SQLiteLogStore
from flywheel.platforms.local.datasets import _check_name
from tests.helpers.sample_logs import sample_lines


@pytest.mark.parametrize("wf_id", [
    "flywheel-wl-cl-sched-2026-12-02T01:03:04Z",
    "flywheel-wl-cl-0123-cand-meta/llama-3.2-1b",
    "x" * 400,
    ":::",
    "a b\tc/../d",
])
def test_run_key_is_a_valid_name_everywhere(wf_id: str) -> None:
    key = run_key(wf_id)
    assert _check_name("name", key) == key
    assert len(key) <= RUN_KEY_MAX
    assert run_key(wf_id) == key  # stable: a retried activity finds what the first attempt created


def test_safe_ids_are_their_own_key_and_unsafe_ones_never_collide() -> None:
    assert run_key("flywheel-wl-cl-0123abcd") == "flywheel-wl-cl-0123abcd"
    assert run_key("a:b") != run_key("a-b") and run_key("a:b") != run_key("a/b")
    assert run_key("x" * 300 + "1") != run_key("x" * 300 + "2")


def test_model_slugs_differ_for_slash_and_dash() -> None:
    assert model_slug("org-m") == "org-m"
    assert model_slug("org/m") != model_slug("org-m")
    assert model_slug("org/m").startswith("org-m-")


def test_check_id_names_the_field() -> None:
    assert check_id("workload_id", "primary_assistant") == "primary_assistant"
    with pytest.raises(InvalidId, match="invalid workload_id 'team/agent x'"):
        check_id("workload_id", "team/agent x")


def test_ingest_refuses_records_with_unusable_ids(tmp_path) -> None:
    store = SQLiteLogStore(tmp_path / "logs.db")
    good = json.loads(sample_lines()[0])
    report = ingest_records([{**good, "workload_id": "team/agent x"}, good], store)
    assert report.loaded == 1 and report.reasons == {"invalid_id": 1}
    assert "workload_id" in report.errors[0].detail


def test_cli_refuses_a_bad_workload_id_naming_the_option(tmp_path) -> None:
    from starter.cli import app

    log = tmp_path / "x.jsonl"
    log.write_text("{}\n")
    result = CliRunner().invoke(app, ["logs", "load", str(log), "--workload-id", "team/agent x", "--client-id", "c"])
    assert result.exit_code == 2, result.output
    assert "workload-id" in result.output and "invalid workload_id" in result.output
