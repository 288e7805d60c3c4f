"""Id shapes accepted in requests; config_name must name an existing config, never a path."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from flywheel.config import ConfigError, load_settings
from starter.ids import ClientId, ConfigName, JobId, ModelName, ScheduleId, WorkloadId

GOOD = {
    WorkloadId: ["primary_assistant", "wl-1a2b", "a.b"],
    ClientId: ["aiva-1", "c1"],
    ModelName: ["meta/llama-3.2-1b-instruct", "customized-meta-llama@0123456789abcdef01234567", "gemma3:270m"],
    JobId: ["0123456789abcdef01234567", "sched-2026-12-02T03:00:00Z"],
    ScheduleId: ["flywheel-schedule-primary_assistant-aiva-1"],
    ConfigName: ["demo", "default"],
}
BAD = {
    WorkloadId: ["", "../etc", "a b", "a/b", "x" * 200, "-lead", "wl\n", "a'b", "\u00e9t\u00e9"],
    ClientId: ["c 1", "c;drop"],
    ModelName: ["", "../../m", "m m"],
    JobId: ["", "../x", "a/b"],
    ScheduleId: ["payroll-nightly", "flywheel-schedule-", "flywheel-schedule-../x"],
    ConfigName: ["../../tmp/x", "/etc/passwd", "nope", "demo.yaml", ""],
}


@pytest.mark.parametrize(("kind", "value"), [(k, v) for k, vs in GOOD.items() for v in vs])
def test_good_ids(kind, value):
    assert TypeAdapter(kind).validate_python(value) == value


@pytest.mark.parametrize(("kind", "value"), [(k, v) for k, vs in BAD.items() for v in vs])
def test_bad_ids(kind, value):
    with pytest.raises(ValidationError):
        TypeAdapter(kind).validate_python(value)


def test_config_name_traversal_does_not_load_or_leak(tmp_path):
    outside = tmp_path / "x.yaml"
    outside.write_text("leaked_secret_key: hunter2\n")
    relative = "../" * 12 + str(outside.with_suffix(""))[1:]
    with pytest.raises(ConfigError) as err:
        load_settings(config_name=relative, environ={})
    assert "hunter2" not in str(err.value) and "leaked_secret_key" not in str(err.value)
    assert "no config named" in str(err.value)
