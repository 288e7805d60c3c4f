"""The similarity judge (1-10) and the job document's llm_judge entry."""

import pytest

from flywheel.config import LLMJudgeConfig
from flywheel.jobdoc import DeploymentStatus
from flywheel.judge import (
    llm_judge_doc,
    needs_deployment,
    similarity_judge_score,
    similarity_prompt,
    similarity_unit,
)


@pytest.mark.parametrize("reply, score", [
    ('{"score": 10}', 10), ("10", 10), ("SIMILARITY: 10", 10), ("Similarity = 7/10", 7),
    ("```json\n{\"score\": 3}\n```", 3), ('{"score": "9"}', 9), ("score: 1", 1),
    ("11", None), ("0", None), ('{"score": 7.5}', None), ("no idea", None), ("", None), (None, None),
])
def test_similarity_reads_whole_numbers_in_range(reply, score):
    assert similarity_judge_score(reply) == score


def test_similarity_prompt_carries_both_answers_but_not_the_system_prompt():
    messages = similarity_prompt({"messages": [{"role": "system", "content": "SECRET SYSTEM"},
                                              {"role": "user", "content": "when do you open?"}]},
                                 "We open at 9.", "Nine o'clock.")
    user = messages[-1]["content"]
    assert "We open at 9." in user and "Nine o'clock." in user and "when do you open?" in user
    assert "SECRET SYSTEM" not in user and "1 to 10" in user


def test_similarity_unit_maps_the_scale_onto_agreement():
    assert (similarity_unit(1), similarity_unit(10), similarity_unit(5.5)) == (0.0, 1.0, 0.5)


def test_llm_judge_doc_states_what_will_judge():
    assert llm_judge_doc(None, "local") is None
    remote = llm_judge_doc(LLMJudgeConfig(url="http://j/v1", model_name="big-judge"), "local")
    assert (remote.model_name, remote.type, remote.deployment_status, remote.error) == (
        "big-judge", "remote", DeploymentStatus.ready, None)
    no_url = llm_judge_doc(LLMJudgeConfig(model_name="j"), "nemo_v2")
    assert no_url.deployment_status == DeploymentStatus.failed and "url" in no_url.error
    on_nim = llm_judge_doc(LLMJudgeConfig(deployment_type="local", model_name="j"), "nemo_v1")
    assert on_nim.deployment_status == DeploymentStatus.ready and on_nim.type == "local"
    local = llm_judge_doc(LLMJudgeConfig(deployment_type="local", model_name="j"), "local")
    assert local.deployment_status == DeploymentStatus.pending and local.error is None


def test_only_a_local_judge_without_url_on_a_deploying_platform_is_deployed_by_the_run():
    local = LLMJudgeConfig(deployment_type="local", model_name="j")
    assert needs_deployment(local, "local") and needs_deployment(local, "nemo_v2")
    assert not needs_deployment(local, "nemo_v1")  # served by the NIM endpoint
    assert not needs_deployment(local.model_copy(update={"url": "http://j/v1"}), "local")
    assert not needs_deployment(LLMJudgeConfig(url="http://j/v1", model_name="j"), "local")
    assert not needs_deployment(None, "local")
