"""The LLM judge beyond tool calls: ``similarity`` (1–10) for workloads without tools, and the job
document's ``llm_judge`` entry.

``similarity`` asks the judge how close the candidate's answer is in meaning to the production
model's answer to the same conversation, on a 1–10 scale, and reads the whole number (a reply of
"10" is 10 — the blueprint's one-digit pattern reads it as 1). The gate reads it on [0, 1] as
``(score - 1) / 9``.
"""

from __future__ import annotations

import re
from typing import Any

from flywheel.config import LLMJudgeConfig
from flywheel.jobdoc import DeploymentStatus, LLMJudgeDoc
from flywheel.metrics import judge_conversation, parse_judge_score
from flywheel.records import message_tool_calls

SIMILARITY_MIN, SIMILARITY_MAX = 1, 10

SIMILARITY_SYSTEM_PROMPT = """You compare two answers an AI assistant could give to the same conversation.
The reference answer is known to be good. Rate how well the candidate answer says the same thing:
10 = the same meaning and every fact, figure, name and instruction of the reference is present;
7-9 = the same meaning with minor omissions or harmless additions;
4-6 = partly the same, but something a user would rely on is missing or different;
1-3 = a different, wrong or empty answer.
Wording, tone and length do not matter; meaning does.
Answer with a JSON object only, for example {"score": 8}."""

EMPTY_ANSWER = "(empty)"
_SIMILARITY_LABEL = re.compile(r"\bsimilarity\b\s*[:=]?\s*\**\s*(\d+)", re.IGNORECASE)


def similarity_prompt_parts(request: dict[str, Any], reference: str) -> tuple[str, str]:
    """The similarity question around the candidate's answer: ``head + answer + tail`` (the NeMo v2
    judge template renders the answer itself between the two)."""
    head = ("Conversation:\n" + judge_conversation(request)
            + "\n\nReference answer:\n" + (reference or EMPTY_ANSWER)
            + "\n\nCandidate answer:\n")
    return head, '\n\nHow similar is the candidate answer to the reference, from 1 to 10? Reply {"score": N}.'


def similarity_prompt(request: dict[str, Any], reference: str, candidate: str) -> list[dict[str, str]]:
    """Chat messages asking the judge for a 1–10 similarity of ``candidate`` to ``reference``."""
    head, tail = similarity_prompt_parts(request, reference)
    return [{"role": "system", "content": SIMILARITY_SYSTEM_PROMPT},
            {"role": "user", "content": head + (candidate or EMPTY_ANSWER) + tail}]


def similarity_judge_score(text: str | None) -> int | None:
    """The 1–10 similarity in a judge reply; None when unparseable or out of range."""
    score = parse_judge_score(text)
    if score is None and text:
        match = _SIMILARITY_LABEL.search(text)
        score = int(match.group(1)) if match else None
    return score if score is not None and SIMILARITY_MIN <= score <= SIMILARITY_MAX else None


def similarity_unit(score: float) -> float:
    """A 1–10 similarity on [0, 1] (for the gate's agreement)."""
    return (score - SIMILARITY_MIN) / (SIMILARITY_MAX - SIMILARITY_MIN)


# -- verdicts settled without asking, and the mean (the same on every platform) ---------------------
def tool_verdict_by_rule(expected: list[Any], prediction: dict[str, Any] | None) -> int | None:
    """tool_calling_correctness without asking the judge: a failed request is 0; a record that expects
    no call is 1 when none was made, else 0; None when the judge must decide."""
    if prediction is None:
        return 0
    if not expected:
        return 0 if message_tool_calls(prediction) else 1
    return None


def similarity_by_rule(prediction: dict[str, Any] | None) -> int | None:
    """similarity without asking: a failed request scores the minimum; None when the judge must decide."""
    return SIMILARITY_MIN if prediction is None else None


def verdicts_mean(verdicts: list[int | None]) -> tuple[float | None, str | None]:
    """The mean of the usable verdicts, and a note on the records left out (or why there is no mean)."""
    usable = [v for v in verdicts if v is not None]
    if not usable:
        return None, "the judge gave no usable verdict" if verdicts else "no records"
    missing = len(verdicts) - len(usable)
    note = f"judge gave no usable verdict for {missing} of {len(verdicts)} records (excluded)" if missing else None
    return sum(usable) / len(usable), note


# Platforms whose workflow deploys a local judge for the run (nemo_v1 serves it from its NIM endpoint).
DEPLOYS_LOCAL_JUDGE = ("local", "nemo_v2")


def needs_deployment(config: LLMJudgeConfig | None, platform_kind: str) -> bool:
    """True when the run must deploy the judge itself (local judge, no url, a platform that can deploy)."""
    return (config is not None and config.deployment_type == "local" and not config.url
            and bool(config.model_name) and platform_kind in DEPLOYS_LOCAL_JUDGE)


def llm_judge_doc(config: LLMJudgeConfig | None, platform_kind: str) -> LLMJudgeDoc | None:
    """The job document's ``llm_judge`` at the start of a run: which judge, where, and whether it can run."""
    if config is None:
        return None
    doc = LLMJudgeDoc(model_name=config.model_name, type=config.deployment_type)
    if not config.model_name:
        doc.deployment_status, doc.error = DeploymentStatus.failed, "llm_judge_config.model_name is not set"
    elif config.deployment_type == "remote" and not config.url:
        doc.deployment_status = DeploymentStatus.failed
        doc.error = "llm_judge_config.url is required for a remote judge"
    elif config.deployment_type == "remote" or config.url:
        doc.deployment_status = DeploymentStatus.ready  # served elsewhere: nothing to deploy
    elif platform_kind == "nemo_v1":
        doc.deployment_status = DeploymentStatus.ready  # served by the NIM endpoint the platform already runs
    else:
        doc.deployment_status = DeploymentStatus.pending  # the run deploys it before the candidates
    return doc
