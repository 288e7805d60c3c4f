"""Models Temporal carries decode across one version of the code up or down (docs/versioning.md): unknown
fields are ignored at every depth — inside the strict Settings snapshot too — and missing ones defaulted.
Encoded and decoded by the SAME pydantic payload converter the workers use."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from flywheel.config import Settings
from workflows.models import CustomizeInput, FlywheelJobInput

CONVERTER = pydantic_data_converter.payload_converter


def _settings() -> Settings:
    return Settings(nims=[{"model_name": "meta/llama-3.2-1b-instruct", "context_length": 8192,
                           "customization_enabled": True}], training_config={"epochs": 3})


def _roundtrip(value, edit, as_type):
    (payload,) = CONVERTER.to_payloads([value])
    data = json.loads(payload.data)
    edit(data)
    edited = Payload(metadata=payload.metadata, data=json.dumps(data).encode())
    (decoded,) = CONVERTER.from_payloads([edited], [as_type])
    return decoded


def test_a_newer_versions_input_decodes_here() -> None:
    inp = FlywheelJobInput(job_id="j", workload_id="w", client_id="c", settings=_settings())

    def newer(d):
        d["priority"] = "high"  # a field the next version added, at every depth
        d["settings"]["future_section"] = {"knob": 1}
        d["settings"]["temporal"]["future_knob"] = True
        d["settings"]["nims"][0]["future_nim_field"] = "x"
        d["settings"]["training_config"]["future_training_field"] = 2

    decoded = _roundtrip(inp, newer, FlywheelJobInput)
    assert decoded.settings.nims[0].model_name == "meta/llama-3.2-1b-instruct"
    assert decoded.settings.training_config.epochs == 3
    assert decoded.settings == inp.settings


def test_an_older_versions_input_decodes_here_with_defaults() -> None:
    inp = CustomizeInput.model_validate({
        "settings": _settings().model_dump(mode="json"),
        "spec": {"name": "n", "nim": {"model_name": "m", "context_length": 4096},
                 "train": {"name": "t", "split": "train", "uri": "file:///t", "num_records": 1},
                 "training": {"epochs": 1}, "lora": {}, "output_model": "o"},
    })

    def older(d):
        del d["stall_s"]  # fields the previous version did not have yet
        del d["settings"]["gate"]
        del d["settings"]["training_config"]["epochs"]

    decoded = _roundtrip(inp, older, CustomizeInput)
    assert decoded.stall_s is None
    assert decoded.settings.gate == Settings().gate
    assert decoded.settings.training_config.epochs == Settings().training_config.epochs


def test_config_files_stay_strict() -> None:
    with pytest.raises(ValidationError, match="future_knob"):
        Settings.model_validate({"temporal": {"future_knob": True}})


def test_an_embedding_job_input_from_the_next_version_decodes_here() -> None:
    from flywheel.retrieval.config import EmbeddingCandidateConfig
    from workflows.embedding_models import EmbeddingCandidateInput

    inp = EmbeddingCandidateInput(parent_workflow_id="p", job_id="j", candidate=EmbeddingCandidateConfig(),
                                  settings=_settings(), datasets={}, eval_types=["base-eval"])

    def newer(d):
        d["candidate"]["future_candidate_field"] = 1  # e.g. a new field of a strict embedding candidate section
        d["settings"]["embedding_config"]["candidates"][0]["future_candidate_field"] = 1
        d["settings"]["embedding_config"]["training"]["future_training_field"] = 2

    decoded = _roundtrip(inp, newer, EmbeddingCandidateInput)
    assert decoded.candidate == inp.candidate and decoded.settings == inp.settings
