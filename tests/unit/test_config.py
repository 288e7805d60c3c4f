"""Config: YAML sections our users already write, env overrides, errors that name the field."""

import pytest

from flywheel.config import ConfigError, load_settings


def test_defaults_load_with_two_candidates():
    s = load_settings(environ={})
    assert [n.model_name for n in s.nims] == ["qwen2.5-coder-0.5b-instruct", "gemma-3-270m"]
    # A fixed default seed: runs are reproducible (the reference defaults to null).
    assert s.data_split_config.random_seed == 42


def test_named_config_overrides_defaults():
    s = load_settings(config_name="demo", environ={})
    assert s.config_name == "demo"
    assert s.data_split_config.eval_size == 20
    assert s.training_config.max_steps == 12
    # Sections not mentioned by the profile keep the defaults.
    assert s.icl_config.example_selection.value == "uniform_distribution"


def test_env_overrides_win_and_keep_types():
    s = load_settings(environ={"FLYWHEEL__TEMPORAL__ADDRESS": "t:7233", "FLYWHEEL__DATA_SPLIT_CONFIG__EVAL_SIZE": "7"})
    assert s.temporal.address == "t:7233"
    assert s.data_split_config.eval_size == 7


@pytest.mark.parametrize(
    "env, field",
    [
        ({"FLYWHEEL__DATA_SPLIT_CONFIG__EVAL_SIZE": "0"}, "data_split_config.eval_size"),
        ({"FLYWHEEL__ICL_CONFIG__MIN_EXAMPLES": "9"}, "icl_config"),
        ({"FLYWHEEL__PLATFORM__KIND": "k8s"}, "platform.kind"),
        ({"FLYWHEEL__TRAINING_CONFIG__LERNING_RATE": "1"}, "training_config.lerning_rate"),
    ],
)
def test_invalid_config_names_the_field(env, field):
    with pytest.raises(ConfigError) as exc:
        load_settings(environ=env)
    assert field in str(exc.value)


def test_unknown_config_name_lists_available():
    with pytest.raises(ConfigError, match=r"config_name.*available: .*demo"):
        load_settings(config_name="nope", environ={})


def test_duplicate_model_names_rejected(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("nims:\n  - {model_name: a}\n  - {model_name: a}\n")
    with pytest.raises(ConfigError, match=r"nims: .*duplicate model_name: a"):
        load_settings(path=cfg, environ={})


def test_model_source_needs_path_or_package(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("nims:\n  - {model_name: a, source: {sha256: abc}}\n")
    with pytest.raises(ConfigError, match=r"nims.0.source"):
        load_settings(path=cfg, environ={})


def test_activity_timeouts_are_configurable_field_by_field():
    assert load_settings(environ={}).temporal.activity_timeouts is None  # production defaults
    s = load_settings(environ={"FLYWHEEL__TEMPORAL__ACTIVITY_TIMEOUTS__CUSTOMIZE_HEARTBEAT_S": "20"})
    assert s.temporal.activity_timeouts.customize_heartbeat_s == 20
    assert s.temporal.activity_timeouts.evaluate_heartbeat_s == 120  # unset fields keep the defaults
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"FLYWHEEL__TEMPORAL__ACTIVITY_TIMEOUTS__CUSTOMISE_HEARTBEAT_S": "20"})
    assert "temporal.activity_timeouts.customise_heartbeat_s" in str(exc.value)
