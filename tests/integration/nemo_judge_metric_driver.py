"""Runs NeMo Evaluator's own ``llm-judge`` metric, hydrated from OUR metric bundle, on scripted rows (inside
the NeMo Platform venv, Python 3.12/3.13).

Reads ``{"bundle": {...}, "cases": [{"item": row, "sample": {"output_text", "response"}, "reply": text}]}``
from the file named by argv[1]. For each case the bundle is validated and unbundled as the Evaluator's job
does it (the API's ``MetricInline`` → ``to_runtime_bundle`` → ``unbundle_metric``), the judge's inference
call is captured instead of sent (it answers ``reply``), and the case prints ``{"request": the rendered
judge request, "model", "url", "value": the parsed score or null}`` or ``{"error": "..."}``. Not imported
by the project: it runs in the other venv.
"""

import asyncio
import json
import math
import sys

import nemo_evaluator.shared.metric_bundles.inline  # noqa: F401 - registers the inline payload kind, as the job does
from nemo_evaluator.api.schemas import MetricInline
from nemo_evaluator.jobs.metric_resolution import to_runtime_bundle
from nemo_evaluator.shared.metric_bundles.bundles import unbundle_metric
from nemo_evaluator_sdk.values.protocol import CandidateOutput, DatasetRow, MetricInput


async def judge_all(bundle, cases):
    out = []
    for index, case in enumerate(cases):
        metric = unbundle_metric(to_runtime_bundle(MetricInline.model_validate(bundle)))
        captured = {}

        async def answer(model, request, max_retries, *, client=None, api_key=None, default_headers=None,
                         timeout=None, case=case, captured=captured):
            captured.update(request=request, model=model.name, url=model.url)
            return {"choices": [{"index": 0, "message": {"role": "assistant", "content": case["reply"]}}]}

        metric.set_inference_fn(answer)
        try:
            result = await metric.compute_scores(MetricInput(row=DatasetRow(row_index=index, data=case["item"]),
                                                             candidate=CandidateOutput(**case["sample"])))
            values = [o.value for o in result.outputs]
            value = values[0] if values else None
            out.append({**captured, "value": None if isinstance(value, float) and math.isnan(value) else value})
        except Exception as exc:  # noqa: BLE001 - reported per case: the test decides what an error means
            out.append({"error": f"{type(exc).__name__}: {exc}"})
    return out


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        data = json.load(handle)
    json.dump(asyncio.run(judge_all(data["bundle"], data["cases"])), sys.stdout)
