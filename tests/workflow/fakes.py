"""Fake activities registered under the real names (no model, no platform).

Behaviour is driven by the candidate's model name so it also works in a separate worker process:
``fail-deploy`` in the name → deploy fails (non-retryable); ``fail-eval`` → every evaluation fails;
``slow`` → evaluations wait (heartbeating) until ``<data_dir>/release`` exists; ``nocap`` →
customization is unavailable. Every call is appended to ``<data_dir>/calls.jsonl``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.persistence import aggregate_results, persist_job
from flywheel.types import CustomizationResult, DatasetRef, Endpoint, EvalResult
from workflows.models import (
    BuildICLInput,
    CustomizeInput,
    DeployInput,
    EvaluateInput,
    PrepareDataInput,
    PreparedData,
    ReportInput,
    TeardownInput,
)

SCORES = {"base-eval": 0.6, "icl-eval": 0.8, "customized-eval": 0.97}


def record(data_dir: str | Path, act: str, phase: str, **fields: Any) -> None:
    path = Path(data_dir) / "calls.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"act": act, "phase": phase, "pid": os.getpid(), **fields}, default=str)
    with path.open("a") as fh:
        fh.write(line + "\n")
        fh.flush()


def calls(data_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(data_dir) / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@activity.defn(name="prepare_data")
async def prepare_data(inp: PrepareDataInput) -> PreparedData:
    d = inp.settings.platform.data_dir
    record(d, "prepare_data", "start", split=inp.data_split_config.model_dump())
    refs = {s: DatasetRef(name=f"{inp.workflow_id}-{s}", split=s, uri=f"file:///fake/{s}.jsonl", num_records=n)
            for s, n in (("eval", 20), ("train", 60), ("val", 7))}
    record(d, "prepare_data", "done")
    return PreparedData(num_records=87, curation={"kept": 87, "dropped": {"invalid": 3}}, datasets=refs,
                        manifest_hash="abc123")


@activity.defn(name="build_icl_dataset")
async def build_icl_dataset(inp: BuildICLInput) -> DatasetRef:
    record(inp.settings.platform.data_dir, "build_icl_dataset", "done", name=inp.name)
    return DatasetRef(name=inp.name, split="icl", uri=f"file:///fake/{inp.name}.jsonl",
                      num_records=inp.eval_dataset.num_records)


@activity.defn(name="deploy")
async def deploy(inp: DeployInput) -> Endpoint:
    d = inp.settings.platform.data_dir
    record(d, "deploy", "start", name=inp.name)
    if "fail-deploy" in inp.nim.model_name:
        raise ApplicationError("no capacity for this model", type="DeploymentFailed", non_retryable=True)
    record(d, "deploy", "done", name=inp.name)
    return Endpoint(deployment_name=inp.name, model_name=inp.nim.model_name, served_model=inp.nim.model_name,
                    base_url="http://fake/v1")


@activity.defn(name="teardown")
async def teardown(inp: TeardownInput) -> None:
    record(inp.settings.platform.data_dir, "teardown", "done", name=inp.endpoint.deployment_name)


@activity.defn(name="evaluate")
async def evaluate(inp: EvaluateInput) -> EvalResult:
    d, spec = inp.settings.platform.data_dir, inp.spec
    model = spec.endpoint.model_name
    record(d, "evaluate", "start", name=spec.name, attempt=activity.info().attempt)
    if "fail-eval" in model:
        raise ApplicationError("endpoint returned 400 for every request", type="EvaluationFailed",
                               non_retryable=True)
    if "slow" in model:
        release = Path(d) / "release"
        try:
            while not release.exists():
                activity.heartbeat({"done": 1})
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            record(d, "evaluate", "cancelled", name=spec.name)
            raise
    score = SCORES[spec.eval_type]
    record(d, "evaluate", "done", name=spec.name)
    return EvalResult(
        eval_type=spec.eval_type, num_records=spec.dataset.num_records,
        scores={"function_name": score, "function_name_and_args_accuracy": score - 0.01,
                "tool_calling_correctness": None},
        score_notes={"tool_calling_correctness": "no judge configured"},
        latency_p50_ms=100.0, latency_p95_ms=200.0, prompt_tokens=10000, completion_tokens=1000,
        runtime_seconds=0.1,
    )


@activity.defn(name="customize")
async def customize(inp: CustomizeInput) -> CustomizationResult:
    d, spec = inp.settings.platform.data_dir, inp.spec
    record(d, "customize", "start", name=spec.name)
    if "nocap" in spec.nim.model_name:
        raise ApplicationError("local customization needs the local extra (peft)",
                               type="CapabilityUnavailable", non_retryable=True)
    activity.heartbeat({"step": 2, "epoch": 1, "loss": 0.5, "checkpoint": f"file:///ckpt/{spec.name}/2"})
    record(d, "customize", "done", name=spec.name)
    return CustomizationResult(customized_model=spec.output_model, adapter_uri=f"file:///adapters/{spec.name}",
                               steps_completed=4, epochs_completed=2, final_loss=0.3)


@activity.defn(name="write_report")
async def write_report(inp: ReportInput) -> str:
    record(inp.settings.platform.data_dir, "write_report", "done")
    return f"{inp.settings.platform.data_dir}/reports/{inp.doc.id}/index.html"


# Real persistence (sqlite job store) and aggregation (flywheel.stats) run as they are.
FAKE_ACTIVITIES = [prepare_data, build_icl_dataset, deploy, teardown, evaluate, customize, write_report,
                   persist_job, aggregate_results]
