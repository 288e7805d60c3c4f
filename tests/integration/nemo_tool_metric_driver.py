"""Runs NeMo Evaluator's own tool-calling metric on pairs (inside the NeMo Platform venv, Python 3.12/3.13).

Reads a JSON list of ``{"reference": [tool calls], "response": ChatCompletion}`` from the file named by
argv[1] and prints a JSON list: per pair ``{"function_name_accuracy", "function_name_and_args_accuracy"}``
(NaN as null) or ``{"error": "..."}``. Uses the metric's public ``compute_scores`` with the reference
template the blueprint uses for its dataset column. Not imported by the project: it runs in the other venv.
"""

import asyncio
import json
import math
import sys

from nemo_evaluator_sdk.metrics.tool_calling import ToolCallingMetric
from nemo_evaluator_sdk.values.protocol import CandidateOutput, DatasetRow, MetricInput


async def score_all(pairs):
    metric = ToolCallingMetric(reference="{{ item.reference }}")
    out = []
    for index, pair in enumerate(pairs):
        try:
            result = await metric.compute_scores(MetricInput(
                row=DatasetRow(row_index=index, data={"reference": pair["reference"]}),
                candidate=CandidateOutput(response=pair["response"])))
            out.append({o.name: (None if isinstance(o.value, float) and math.isnan(o.value) else o.value)
                        for o in result.outputs})
        except Exception as exc:  # noqa: BLE001 - reported per pair: the test decides what an error means
            out.append({"error": f"{type(exc).__name__}: {exc}"})
    return out


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        pairs = json.load(handle)
    json.dump(asyncio.run(score_all(pairs)), sys.stdout)
