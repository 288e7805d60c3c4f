"""The `flywheel` CLI: help everywhere, config errors exit 2 naming the field, `logs load` reporting."""

import json

import pytest
import typer.main
from typer.testing import CliRunner

from starter.cli import app

runner = CliRunner()


def _command_paths(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    if hasattr(command, "commands"):  # a group (typer vendors its own click)
        for name, sub in command.commands.items():
            paths += _command_paths(sub, prefix + (name,))
    return paths


ALL_COMMANDS = _command_paths(typer.main.get_command(app))


def test_every_documented_command_exists():
    names = {" ".join(p) for p in ALL_COMMANDS}
    expected = {"demo", "run", "status", "list", "cancel", "promote", "reject", "logs load", "score", "worker", "api",
                "schedule create", "schedule list", "schedule pause", "schedule unpause", "schedule trigger",
                "schedule delete"}
    assert expected <= names


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "flywheel")
def test_help_exits_zero(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Keep stores in tmp_path and ignore any config the caller's environment selects."""
    for var in ("FLYWHEEL_CONFIG", "FLYWHEEL_CONFIG_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FLYWHEEL__PLATFORM__DATA_DIR", str(tmp_path / "state"))
    return tmp_path


@pytest.mark.parametrize("args", [["list"], ["status", "abc"], ["run", "--workload-id", "w", "--client-id", "c"],
                                  ["logs", "load", "__FILE__", "--workload-id", "w", "--client-id", "c"]])
def test_invalid_config_exits_2_naming_the_field(sandbox, args):
    config = sandbox / "bad.yaml"
    config.write_text("api: {port: 0}\ndata_split_config: {eval_sise: 5}\n")
    logs = sandbox / "logs.jsonl"
    logs.write_text("{}\n")
    args = [str(logs) if a == "__FILE__" else a for a in args]
    result = runner.invoke(app, ["--config", str(config), *args])
    assert result.exit_code == 2, result.output
    assert "api.port" in result.output
    assert "data_split_config.eval_sise" in result.output


def test_unknown_config_name_exits_2(sandbox):
    result = runner.invoke(app, ["--config-name", "no-such-profile", "list"])
    assert result.exit_code == 2
    assert "config_name" in result.output and "no-such-profile" in result.output


def _record(query: str) -> dict:
    return {
        "timestamp": 1767225600, "workload_id": "ignored", "client_id": "ignored",
        "request": {"model": "prod", "messages": [{"role": "user", "content": query}],
                    "tools": [{"type": "function", "function": {"name": "get_order", "parameters": {
                        "type": "object", "properties": {"order_id": {"type": "string"}}}}}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_order", "arguments": '{"order_id": "A1"}'}}]}}]},
    }


def test_logs_load_reports_bad_lines_with_numbers(sandbox):
    from flywheel.config import load_settings
    from flywheel.logstore import open_logstore

    path = sandbox / "logs.jsonl"
    lines = [json.dumps(_record("q1")), "{not json", json.dumps(_record("q2")), json.dumps({"timestamp": 1}),
             json.dumps(_record("q3")), "[1, 2]"]
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["logs", "load", str(path), "--workload-id", "wl", "--client-id", "cl"])
    assert result.exit_code == 0, result.output
    assert "loaded 3, skipped 3" in result.output
    assert "line 2:" in result.output and "line 4:" in result.output and "line 6:" in result.output
    with open_logstore(load_settings()) as store:  # the real sqlite store the command wrote to
        assert store.count("wl", "cl") == 3


def test_logs_load_twice_stores_nothing_new_and_succeeds(sandbox):
    from flywheel.config import load_settings
    from flywheel.logstore import open_logstore

    path = sandbox / "logs.jsonl"
    path.write_text("\n".join(json.dumps(_record(q)) for q in ("q1", "q2")) + "\n")
    args = ["logs", "load", str(path), "--workload-id", "wl", "--client-id", "again"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "loaded 0, skipped 0 (2 already stored)" in result.output
    with open_logstore(load_settings()) as store:
        assert store.count("wl", "again") == 2


def test_logs_load_exits_1_when_nothing_loaded(sandbox):
    path = sandbox / "bad.jsonl"
    path.write_text("oops\n{\n")
    result = runner.invoke(app, ["logs", "load", str(path), "--workload-id", "wl", "--client-id", "cl"])
    assert result.exit_code == 1
    assert "loaded 0, skipped 2" in result.output
    assert "line 1:" in result.output and "line 2:" in result.output


def test_logs_load_missing_file_is_a_usage_error(sandbox):
    result = runner.invoke(app, ["logs", "load", str(sandbox / "nope.jsonl"), "--workload-id", "w", "--client-id", "c"])
    assert result.exit_code == 2


def test_score_prints_metrics_json(sandbox):
    triple = _record("q")
    triple["prediction"] = triple["response"]
    path = sandbox / "triples.jsonl"
    path.write_text(json.dumps(triple) + "\n")
    result = runner.invoke(app, ["score", str(path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["function_name_and_args_accuracy"] == 1.0


def test_progress_line_shows_live_training_step_and_loss():
    from flywheel.jobdoc import CustomizationDoc, EvaluationDoc, JobDocument, NimDoc
    from starter.cli_progress import progress_line

    doc = JobDocument(id="j", workload_id="w", client_id="c", nims=[NimDoc(
        model_name="m", evaluations=[EvaluationDoc(eval_type="base-eval", progress=40)],
        customizations=[CustomizationDoc(progress=25, steps_completed=3, loss=0.5123)])])
    line = progress_line(doc)
    assert "base-eval=40%" in line and "training=25% step=3 loss=0.512" in line
