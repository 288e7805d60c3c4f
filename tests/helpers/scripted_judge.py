"""A deterministic judge for tests: it reads the question our judge prompts ask and answers like a careful model.

* ``tool_calling_correctness`` questions: ``{"score": 1}`` when the predicted calls equal the ground truth
  (same names, same parsed arguments, any order), else ``{"score": 0}``.
* ``similarity`` questions: ``{"score": 10}`` when the candidate answer equals the reference (case and
  surrounding blanks aside), else ``{"score": 2}``.
* A conversation containing a key of :data:`SCRIPTED` gets that reply verbatim (odd replies on purpose:
  out of range, labelled, unparseable, contrary to the rules).
"""

from __future__ import annotations

import json
from typing import Any

JUDGE_MODEL = "judge-model"
SCRIPTED = {
    "JUDGE-SAYS-ZERO": '{"score": 0}',
    "JUDGE-SAYS-TEN": "10",
    "JUDGE-SAYS-ELEVEN": "11",
    "JUDGE-SAYS-LABELLED-ONE": "SCORE: 1",
    "JUDGE-SAYS-SIMILARITY-SEVEN": "Similarity: 7",
    "JUDGE-SAYS-NOTHING-USEFUL": "I cannot tell.",
}


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def _calls(text: str) -> list[tuple[str, str]]:
    return sorted((c.get("name"), json.dumps(c.get("arguments"), sort_keys=True)) for c in json.loads(text))


def judge_reply_text(user: str) -> str:
    """The judge's reply to a question (the user message of one of our judge prompts)."""
    for key, reply in SCRIPTED.items():
        if key in user:
            return reply
    if "Ground-truth tool calls:\n" in user:
        expected = _between(user, "Ground-truth tool calls:\n", "\n\nPredicted tool calls:\n")
        predicted = _between(user, "Predicted tool calls:\n", "\n\nIs the prediction correct?")
        return json.dumps({"score": int(_calls(expected) == _calls(predicted))})
    reference = _between(user, "Reference answer:\n", "\n\nCandidate answer:\n")
    candidate = _between(user, "Candidate answer:\n", "\n\nHow similar")
    return json.dumps({"score": 10 if reference.strip().casefold() == candidate.strip().casefold() else 2})


def judge_message(body: dict[str, Any]) -> dict[str, Any]:
    """A ScriptedOpenAI responder's answer for a request to the judge model."""
    user = [m for m in body["messages"] if m.get("role") == "user"][-1]["content"]
    return {"role": "assistant", "content": judge_reply_text(user)}
