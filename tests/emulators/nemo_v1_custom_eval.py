"""The ``custom`` evaluation of the NeMo Microservices v1 CONTRACT EMULATOR (tests/emulators/nemo_v1_emulator.py):
a ``chat-completion`` task really evaluates. Each dataset row's request template is rendered (Jinja, like the
real Evaluator), sent to the target's OpenAI endpoint, and scored with our evaluator of record
(:func:`flywheel.metrics.score_tool_calls`), plus the LLM judge when one is configured. Scores are reported as
``metrics.<metric>.scores.<score>`` with ``value`` and ``stats{count, sum}``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jinja2

from flywheel.metrics import score_tool_calls

JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined)
JINJA.filters["tojson"] = lambda v: json.dumps(v)


def render(template: Any, ctx: dict[str, Any]) -> Any:
    if isinstance(template, dict):
        return {k: render(v, ctx) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, ctx) for v in template]
    if isinstance(template, str) and "{{" in template:
        out = JINJA.from_string(template).render(ctx)
        whole = template.strip()
        single = whole.startswith("{{") and whole.endswith("}}") and whole.count("{{") == 1
        return json.loads(out) if single and "tojson" in whole else out
    return template


def dataset_rows(repos: dict[str, dict[str, bytes]], files_url: str) -> list[dict[str, Any]]:
    ns, repo, path = files_url.removeprefix("hf://datasets/").split("/", 2)
    return [json.loads(line) for line in repos[f"{ns}/{repo}"][path].decode().splitlines() if line.strip()]


def run_custom_evaluation(repos: dict[str, dict[str, bytes]], models: dict[str, dict[str, Any]],
                          config: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """The ``tasks`` of the job's result."""
    model = target["model"]
    if isinstance(model, str):  # an Entity Store reference: it must be registered (else the real 404)
        model = models[model]
    endpoint = model["api_endpoint"]
    tasks_out: dict[str, Any] = {}
    for task_name, task in config["tasks"].items():
        rows = dataset_rows(repos, task["dataset"]["files_url"])
        values: dict[tuple[str, str], list[float]] = {}
        for item in rows:
            request = render(task["params"]["template"], {"item": item})
            request["model"] = endpoint["model_id"]
            response = httpx.post(endpoint["url"], json=request, timeout=30).json()
            sample = {"response": response}
            for metric_name, metric in task["metrics"].items():
                if metric["type"] == "tool-calling":
                    expected = render(metric["params"]["tool_calls_ground_truth"], {"item": item}) or []
                    predicted = response["choices"][0]["message"].get("tool_calls") or []
                    score = score_tool_calls(expected, predicted)
                    values.setdefault((metric_name, "function_name_accuracy"), []).append(score.function_name)
                    values.setdefault((metric_name, "function_name_and_args_accuracy"), []).append(
                        score.function_name_and_args_accuracy)
                elif metric["type"] == "llm-judge":
                    params = metric["params"]
                    judge = params["model"]["api_endpoint"]
                    messages = render(params["template"]["messages"], {"item": item, "sample": sample})
                    text = httpx.post(judge["url"], json={"model": judge["model_id"], "messages": messages},
                                      timeout=30).json()["choices"][0]["message"]["content"]
                    for score_name, spec in params["scores"].items():
                        found = re.search(spec["parser"]["pattern"], text or "")
                        if found:
                            values.setdefault((metric_name, score_name), []).append(float(found.group(1)))
        metrics: dict[str, Any] = {}
        for (metric_name, score_name), vals in values.items():
            metrics.setdefault(metric_name, {"scores": {}})["scores"][score_name] = {
                "value": sum(vals) / len(vals), "stats": {"count": len(vals), "sum": sum(vals)}}
        tasks_out[task_name] = {"metrics": metrics}
    return tasks_out
