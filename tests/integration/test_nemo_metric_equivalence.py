"""Our ``function_name`` / ``function_name_and_args_accuracy`` equal NeMo Evaluator's tool-calling metric.

Generated (seeded) ground-truth / prediction pairs are scored by flywheel.metrics and by NeMo's own
metric code (``nemo_evaluator_sdk.metrics.tool_calling`` from the ``nemo-platform`` wheel), run in the
NeMo Platform venv (``.venv-nemo``, Python 3.12/3.13, built by ``scripts/nemo_platform_venv.sh``; any
3.12/3.13 interpreter that can import that module can be named by ``NEMO_METRIC_PYTHON``). The pairs
cover what production logs and model answers contain: duplicated and reordered calls, missing and
extra calls, case changes, booleans vs numbers, ``1`` vs ``1.0``, numeric strings, nested values,
unparseable or non-object argument text, absent arguments and calls without a name.

``NEMO_METRIC_PAIRS`` sets how many pairs (default 3000).
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flywheel.metrics import score_tool_calls
from flywheel.scoring import message_tool_calls, response_message

pytestmark = pytest.mark.nemo_platform

REPO_ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("nemo_tool_metric_driver.py")
NEMO_VENV = Path(os.environ.get("NEMO_PLATFORM_VENV", REPO_ROOT / ".venv-nemo"))

NAMES = ["get_weather", "search", "Search", "book_flight", "send_email"]
KEYS = ["city", "n", "flag", "q", "opts"]
LEAVES: list[Any] = [0, 1, 5, -3, 1.0, 5.0, 2.5, True, False, "5", "1", "Paris", "paris", " Paris", "true", "", None]
BROKEN_ARGUMENTS = ["{bad", "", "None", "{'city': 'Paris'}", '{"city": "Paris"', "undefined"]
NON_OBJECT_ARGUMENTS = ["5", "[1, 2]", "null", '"Paris"', "true"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.1:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and roll < 0.2:
        return {k: _value(rng, depth + 1) for k in rng.sample(KEYS, rng.randint(0, 2))}
    return rng.choice(LEAVES)


def _arguments(rng: random.Random) -> dict[str, Any]:
    return {k: _value(rng) for k in rng.sample(KEYS, rng.randint(0, 3))}


def _equivalent_or_changed(rng: random.Random, value: Any) -> Any:
    """A value Python calls equal (true/1/1.0, 5/5.0) or a different one."""
    if rng.random() < 0.6 and isinstance(value, (bool, int, float)):
        if isinstance(value, bool):
            return rng.choice([int(value), float(value)])
        if value in (0, 1):
            return rng.choice([bool(value), float(value) if isinstance(value, int) else int(value)])
        if float(value).is_integer():
            return float(value) if isinstance(value, int) else int(value)
    return _value(rng)


def _mutate(rng: random.Random, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pred = copy.deepcopy(calls)
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        op = rng.choice(["shuffle", "drop", "duplicate", "add", "rename", "retype", "change", "drop_key", "add_key"])
        if op == "shuffle":
            rng.shuffle(pred)
        elif op == "drop" and pred:
            pred.pop(rng.randrange(len(pred)))
        elif op == "duplicate" and pred:
            twin = copy.deepcopy(rng.choice(pred))
            if rng.random() < 0.5:
                twin["function"]["arguments"] = _arguments(rng)
            pred.insert(rng.randrange(len(pred) + 1), twin)
        elif op == "add":
            pred.append({"function": {"name": rng.choice(NAMES), "arguments": _arguments(rng)}})
        elif op == "rename" and pred:
            fn = rng.choice(pred)["function"]
            fn["name"] = rng.choice([fn["name"].upper(), fn["name"].capitalize(), rng.choice(NAMES)])
        elif op in ("retype", "change", "drop_key") and pred:
            args = rng.choice(pred)["function"]["arguments"]
            if args:
                key = rng.choice(list(args))
                if op == "drop_key":
                    del args[key]
                else:
                    args[key] = _equivalent_or_changed(rng, args[key]) if op == "retype" else _value(rng)
        elif op == "add_key" and pred:
            rng.choice(pred)["function"]["arguments"][rng.choice(KEYS)] = _value(rng)
    return pred


def _wire(rng: random.Random, call: dict[str, Any], index: int) -> dict[str, Any]:
    """How an OpenAI-compatible endpoint sends a call: arguments as JSON text (key order arbitrary)."""
    args = call["function"]["arguments"]
    roll = rng.random()
    if roll < 0.05:
        text: Any = rng.choice(BROKEN_ARGUMENTS)
    elif roll < 0.08:
        text = rng.choice(NON_OBJECT_ARGUMENTS)
    elif roll < 0.11:
        text = None
    else:
        items = list(args.items())
        rng.shuffle(items)
        text = json.dumps(dict(items), separators=rng.choice([(",", ":"), (", ", ": ")]))
    function: dict[str, Any] = {"name": call["function"]["name"], "arguments": text}
    if text is None and rng.random() < 0.5:
        del function["arguments"]
    if rng.random() < 0.02:
        del function["name"]  # a malformed call: ignored by name
    return {"id": f"call_{index}", "type": "function", "function": function}


def generate_pairs(count: int, seed: int = 20261202) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        expected = [{"id": f"gt_{i}", "type": "function",
                     "function": {"name": rng.choice(NAMES[:3] if rng.random() < 0.3 else NAMES),
                                  "arguments": _arguments(rng)}}
                    for i in range(rng.choice([0, 1, 1, 1, 2, 2, 3]))]
        predicted = [_wire(rng, c, i) for i, c in enumerate(_mutate(rng, expected))]
        message: dict[str, Any] = {"role": "assistant", "content": None if predicted else "no tool needed"}
        if predicted or rng.random() < 0.5:
            message["tool_calls"] = predicted
        pairs.append({"reference": expected, "response": {"choices": [{"index": 0, "message": message}]}})
    return pairs


def _nemo_python() -> str:
    candidates = [os.environ.get("NEMO_METRIC_PYTHON"), str(NEMO_VENV / "bin" / "python")]
    for python in filter(None, candidates):
        if not Path(python).exists():
            continue
        probe = subprocess.run([python, "-c", "import nemo_evaluator_sdk.metrics.tool_calling"],
                               capture_output=True, text=True, timeout=120)
        if probe.returncode == 0:
            return python
    pytest.skip(f"no interpreter can import NeMo's tool-calling metric (looked at NEMO_METRIC_PYTHON and "
                f"{NEMO_VENV}/bin/python; run scripts/nemo_platform_venv.sh)")


def test_generated_pairs_score_the_same_as_nemo_evaluator(tmp_path):
    python = _nemo_python()
    pairs = generate_pairs(int(os.environ.get("NEMO_METRIC_PAIRS", "3000")))
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(pairs), encoding="utf-8")
    done = subprocess.run([python, str(DRIVER), str(path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout)
    assert len(theirs) == len(pairs)

    mismatches = []
    undefined = duplicated = 0
    for pair, nemo in zip(pairs, theirs):
        assert "error" not in nemo, f"NeMo rejected a generated pair: {nemo['error']} — {pair}"
        ours = score_tool_calls(pair["reference"], message_tool_calls(response_message(pair["response"])))
        mine = {"function_name_accuracy": ours.function_name,
                "function_name_and_args_accuracy": ours.function_name_and_args_accuracy}
        if mine != nemo:
            mismatches.append({"pair": pair, "nemo": nemo, "ours": mine})
        undefined += nemo["function_name_and_args_accuracy"] is None
        names = [c["function"].get("name") for c in pair["response"]["choices"][0]["message"].get("tool_calls") or []]
        duplicated += len(names) != len(set(names))
    # The generator must reach the cases that matter, or the equality says little.
    assert undefined >= len(pairs) // 50 and duplicated >= len(pairs) // 50
    assert sum(1 for n in theirs if n["function_name_and_args_accuracy"] == 1.0) >= len(pairs) // 10
    assert not mismatches, f"{len(mismatches)} of {len(pairs)} pairs differ; first: {json.dumps(mismatches[:3])}"
