"""The LLM judge beyond tool calls: ``similarity`` (1–10) for workloads without tools, and the job
document's ``llm_judge`` entry.

``similarity`` asks the judge how close the candidate's answer is in meaning to the production
model's answer to the same conversation, on a 1–10 scale, and reads the whole number (a reply of
"10" is 10 — the blueprint's one-digit pattern reads it as 1). The gate reads it on [0, 1] as
``(score - 1) / 9``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flywheel.config import LLMJudgeConfig
from flywheel.jobdoc import DeploymentStatus, LLMJudgeDoc
from flywheel.metrics import parse_judge_score

SIMILARITY_MIN, SIMILARITY_MAX = 1, 10

SIMILARITY_SYSTEM_PROMPT = """You compare two answers an AI assistant could give to the same conversation.
The reference answer is known to be good. Rate how well the candidate answer says the same thing:
10 = the same meaning and every fact, figure, name and instruction of the reference is present;
7-9 = the same meaning with minor omissions or harmless additions;
4-6 = partly the same, but something a user would rely on is missing or different;
1-3 = a different, wrong or empty answer.
Wording, tone and length do not matter; meaning does.
Answer with a JSON object only, for example {"score": 8}."""

_SIMILARITY_LABEL = re.compile(r"\bsimilarity\b\s*[:=]?\s*\**\s*(\d+)", re.IGNORECASE)


def similarity_prompt(request: dict[str, Any], reference: str, candidate: str) -> list[dict[str, str]]:
    """Chat messages asking the judge for a 1–10 similarity of ``candidate`` to ``reference``."""
    conversation = [
        {"role": m.get("role"), "content": m.get("content")}
        for m in request.get("messages", []) if isinstance(m, dict) and m.get("role") != "system"
    ]
    user = (
        "Conversation:\n" + json.dumps(conversation, ensure_ascii=False, indent=1)
        + "\n\nReference answer:\n" + (reference or "(empty)")
        + "\n\nCandidate answer:\n" + (candidate or "(empty)")
        + '\n\nHow similar is the candidate answer to the reference, from 1 to 10? Reply {"score": N}.'
    )
    return [{"role": "system", "content": SIMILARITY_SYSTEM_PROMPT}, {"role": "user", "content": user}]


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
