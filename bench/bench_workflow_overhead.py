"""Workflow orchestration overhead: N concurrent FlywheelRun jobs with instant activities on one worker process.

A local Temporal dev server (in memory) and, per size, a fresh worker process that runs the REAL FlywheelRun +
CandidateRun (default sandbox) on the orchestrator queue and instant fakes under the real activity names on the
cpu and gpu queues (``build_workers``, as ``flywheel-worker --queue all``; gpu queue with 1 slot as on a CPU-only
host). Two candidates, customization on one, review_timeout_s 0. The same process starts the N runs at once and
waits for all; one warm-up run first. Everything measured is orchestration: wall / activities executed is the
Temporal overhead per activity (server round trips, workflow tasks, payload conversion).

    python -m bench.bench_workflow_overhead [--sizes 10,100]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from temporalio import activity

from flywheel.jobdoc import JobDocument
from flywheel.types import CustomizationResult, DatasetRef, Endpoint, EvalResult
from workflows import models as m

COUNTS: collections.Counter[str] = collections.Counter()
MODELS = ("alpha", "beta")  # customization enabled on alpha only


# Instant fakes with the real names and minimal valid results (shapes from tests/workflow/fakes.py).
@activity.defn(name=m.ACT_PREPARE_DATA)
async def prepare_data(inp: m.PrepareDataInput) -> m.PreparedData:
    COUNTS[m.ACT_PREPARE_DATA] += 1
    refs = {s: DatasetRef(name=f"{inp.workflow_id}-{s}", split=s, uri=f"file:///fake/{s}.jsonl", num_records=n)
            for s, n in (("eval", 20), ("train", 60), ("val", 7))}
    return m.PreparedData(num_records=87, curation={"kept": 87}, datasets=refs, manifest_hash="abc")


@activity.defn(name=m.ACT_BUILD_ICL)
async def build_icl_dataset(inp: m.BuildICLInput) -> DatasetRef:
    COUNTS[m.ACT_BUILD_ICL] += 1
    return DatasetRef(name=inp.name, split="icl", uri="file:///fake/icl.jsonl",
                      num_records=inp.eval_dataset.num_records)


@activity.defn(name=m.ACT_DEPLOY)
async def deploy(inp: m.DeployInput) -> Endpoint:
    COUNTS[m.ACT_DEPLOY] += 1
    return Endpoint(deployment_name=inp.name, model_name=inp.nim.model_name, served_model=inp.nim.model_name,
                    base_url="http://fake/v1")


@activity.defn(name=m.ACT_TEARDOWN)
async def teardown(inp: m.TeardownInput) -> None:
    COUNTS[m.ACT_TEARDOWN] += 1


@activity.defn(name=m.ACT_EVALUATE)
async def evaluate(inp: m.EvaluateInput) -> EvalResult:
    COUNTS[m.ACT_EVALUATE] += 1
    return EvalResult(eval_type=inp.spec.eval_type, num_records=inp.spec.dataset.num_records,
                      scores={"function_name": 0.8, "function_name_and_args_accuracy": 0.79},
                      latency_p50_ms=100.0, latency_p95_ms=200.0, prompt_tokens=10000, completion_tokens=1000,
                      runtime_seconds=0.1)


@activity.defn(name=m.ACT_CUSTOMIZE)
async def customize(inp: m.CustomizeInput) -> CustomizationResult:
    COUNTS[m.ACT_CUSTOMIZE] += 1
    return CustomizationResult(customized_model=inp.spec.output_model, adapter_uri="file:///adapters/x",
                               steps_completed=4, epochs_completed=2, final_loss=0.3)


@activity.defn(name=m.ACT_PERSIST_JOB)
async def persist_job(inp: m.PersistJobInput) -> None:
    COUNTS[m.ACT_PERSIST_JOB] += 1


@activity.defn(name=m.ACT_AGGREGATE)
async def aggregate_results(inp: m.AggregateInput) -> JobDocument:
    COUNTS[m.ACT_AGGREGATE] += 1
    return inp.doc


@activity.defn(name=m.ACT_WRITE_REPORT)
async def write_report(inp: m.ReportInput) -> str:
    COUNTS[m.ACT_WRITE_REPORT] += 1
    return f"/fake/reports/{inp.doc.id}/index.html"


@activity.defn(name=m.ACT_LOG_MLFLOW)
async def log_mlflow(inp: m.ReportInput) -> dict[str, str]:
    COUNTS[m.ACT_LOG_MLFLOW] += 1
    return {}

FAKE_ACTIVITIES = [prepare_data, build_icl_dataset, deploy, teardown, evaluate, customize, persist_job,
                   aggregate_results, write_report, log_mlflow]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def history_stats(client, parent_ids: list[str]) -> dict:
    """Event counts, sizes and latencies from the histories of every parent and child workflow."""
    from temporalio.api.enums.v1 import EventType as E

    from workflows.models import candidate_workflow_id

    ids = parent_ids + [candidate_workflow_id(p, model) for p in parent_ids for model in MODELS]
    sem = asyncio.Semaphore(16)

    async def fetch(wid: str):
        async with sem:
            return wid, (await client.get_workflow_handle(wid).fetch_history()).events

    kinds: collections.Counter[int] = collections.Counter()
    nbytes, act_ms, wft_ms, run_s = 0, [], [], []
    for wid, events in await asyncio.gather(*(fetch(w) for w in ids)):
        times = {e.event_id: e.event_time.ToDatetime() for e in events}
        for e in events:
            kinds[e.event_type] += 1
            nbytes += e.ByteSize()
            if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                sched = e.activity_task_completed_event_attributes.scheduled_event_id
                act_ms.append((times[e.event_id] - times[sched]).total_seconds() * 1000)
            elif e.event_type == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                sched = e.workflow_task_completed_event_attributes.scheduled_event_id
                wft_ms.append((times[e.event_id] - times[sched]).total_seconds() * 1000)
        if wid in parent_ids:
            run_s.append((times[events[-1].event_id] - times[events[0].event_id]).total_seconds())
    return {
        "workflow_tasks": kinds[E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED],
        "wft_failed_or_timed_out":
            kinds[E.EVENT_TYPE_WORKFLOW_TASK_FAILED] + kinds[E.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT],
        "activity_tasks_history": kinds[E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED],
        "activity_retries_or_failures":
            kinds[E.EVENT_TYPE_ACTIVITY_TASK_FAILED] + kinds[E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT],
        "signals": kinds[E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED],
        "events": sum(kinds.values()), "history_bytes": nbytes,
        "act_p50_ms": pct(act_ms, 50), "act_p95_ms": pct(act_ms, 95),
        "wft_p50_ms": pct(wft_ms, 50), "wft_p95_ms": pct(wft_ms, 95),
        "run_p50_s": pct(run_s, 50), "run_p95_s": pct(run_s, 95), "run_max_s": max(run_s),
    }


async def run_size(address: str, n: int) -> dict:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from flywheel.config import NIMConfig, PlatformConfig, Settings, TaskQueues, TemporalConfig
    from flywheel.jobdoc import RunStatus
    from workers.main import build_workers
    from workflows.flywheel_run import FlywheelRun
    from workflows.models import FlywheelJobInput, flywheel_workflow_id

    client = await Client.connect(address, data_converter=pydantic_data_converter)
    uid = uuid.uuid4().hex[:8]
    settings = Settings(
        platform=PlatformConfig(kind="local", data_dir=tempfile.gettempdir()),
        temporal=TemporalConfig(address=address, max_parallel_candidates=2, review_timeout_s=0,
                                task_queues=TaskQueues(orchestrator=f"orch-{uid}", cpu=f"cpu-{uid}", gpu=f"gpu-{uid}")),
        nims=[NIMConfig(model_name=name, context_length=4096, customization_enabled=name == "alpha",
                        cost_per_1k_tokens=0.001) for name in MODELS],
    )
    acts = FAKE_ACTIVITIES
    workers = build_workers(client, settings, ["orchestrator", "cpu", "gpu"], cpu_activities=acts,
                            gpu_activities=acts, gpu_slot_count=1, graceful_shutdown_s=0)

    async def one(job_id: str):
        return await client.start_workflow(
            FlywheelRun.run, FlywheelJobInput(job_id=job_id, workload_id="bench", client_id=uid, settings=settings,
                                              review_timeout_s=0),
            id=flywheel_workflow_id("bench", uid, job_id), task_queue=settings.temporal.task_queues.orchestrator)

    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        warm_started = time.perf_counter()
        await (await one("warmup")).result()
        warmup_s = time.perf_counter() - warm_started
        COUNTS.clear()
        load_before = os.getloadavg()[0]
        started, cpu_started = time.perf_counter(), time.process_time()
        handles = await asyncio.gather(*(one(f"j{i}") for i in range(n)))
        docs: list[JobDocument] = await asyncio.gather(*(h.result() for h in handles))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        load_after = os.getloadavg()[0]
        activities = dict(COUNTS)
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)
    ok = sum(d.status == RunStatus.completed and all(x.status.value == "completed" for x in d.nims) for d in docs)
    stats = await history_stats(client, [h.id for h in handles])
    return {"n": n, "wall_s": wall, "worker_cpu_s": cpu, "warmup_s": warmup_s, "ok": ok,
            "activities": sum(activities.values()), "by_activity": activities, "load": [load_before, load_after],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **stats}


def server_cpu_s(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])


ROWS = [  # label, function of a result → value, format
    ("workflow runs (parents)", lambda r: r["n"], ".0f"),
    ("  completed OK", lambda r: r["ok"], ".0f"),
    ("wall time (s)", lambda r: r["wall_s"], ".2f"),
    ("activities executed", lambda r: r["activities"], ".0f"),
    ("  per run", lambda r: r["activities"] / r["n"], ".1f"),
    ("workflow tasks (all wfs)", lambda r: r["workflow_tasks"], ".0f"),
    ("  per run", lambda r: r["workflow_tasks"] / r["n"], ".1f"),
    ("signals child->parent/run", lambda r: r["signals"] / r["n"], ".1f"),
    ("history events per run", lambda r: r["events"] / r["n"], ".0f"),
    ("history KiB per run", lambda r: r["history_bytes"] / r["n"] / 1024, ".0f"),
    ("runs / s", lambda r: r["n"] / r["wall_s"], ".2f"),
    ("activities / s", lambda r: r["activities"] / r["wall_s"], ".1f"),
    ("workflow tasks / s", lambda r: r["workflow_tasks"] / r["wall_s"], ".1f"),
    ("wall per activity (ms)", lambda r: r["wall_s"] / r["activities"] * 1000, ".2f"),
    ("wall per run (ms)", lambda r: r["wall_s"] / r["n"] * 1000, ".1f"),
    ("worker CPU (s)", lambda r: r["worker_cpu_s"], ".2f"),
    ("  per activity (ms)", lambda r: r["worker_cpu_s"] / r["activities"] * 1000, ".2f"),
    ("  per workflow task (ms)", lambda r: r["worker_cpu_s"] / r["workflow_tasks"] * 1000, ".2f"),
    ("server CPU s (+warmup,reads)", lambda r: r["server_cpu_s"], ".2f"),
    ("  per activity (ms)", lambda r: r["server_cpu_s"] / r["activities"] * 1000, ".2f"),
    ("run latency p50 (s)", lambda r: r["run_p50_s"], ".2f"),
    ("run latency p95 (s)", lambda r: r["run_p95_s"], ".2f"),
    ("activity sched->done p50 ms", lambda r: r["act_p50_ms"], ".1f"),
    ("activity sched->done p95 ms", lambda r: r["act_p95_ms"], ".1f"),
    ("wf task sched->done p50 ms", lambda r: r["wft_p50_ms"], ".1f"),
    ("wf task sched->done p95 ms", lambda r: r["wft_p95_ms"], ".1f"),
    ("worker peak RSS (MiB)", lambda r: r["peak_rss_mb"], ".0f"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100", help="comma-separated numbers of concurrent runs")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--address", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(asyncio.run(run_size(args.address, args.child))), flush=True)
        return 0

    from starter.stack import TemporalDevServer

    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    server = TemporalDevServer(ui=False, log_level="error").start()
    try:
        for n in sizes:
            cpu0 = server_cpu_s(server.pid)
            out = subprocess.run([sys.executable, "-m", "bench.bench_workflow_overhead", "--child", str(n),
                                  "--address", server.address], capture_output=True, text=True, timeout=900)
            if out.returncode != 0:
                print(out.stdout[-2000:], out.stderr[-4000:], file=sys.stderr)
                return 1
            results.append({**json.loads(out.stdout.strip().splitlines()[-1]),
                            "server_cpu_s": server_cpu_s(server.pid) - cpu0})  # includes warm-up + history reads
    finally:
        server.stop()

    print("FlywheelRun x N at once, 2 candidates (customization on 1), instant fake activities, review_timeout_s 0")
    print("one worker process: orchestrator (FlywheelRun+CandidateRun, sandboxed) + cpu + gpu queues; SDK defaults "
          "max_concurrent_workflow_tasks=100, max_concurrent_activities=100 (gpu queue: 1 slot), "
          "max_cached_workflows=1000, 5 pollers/queue; pydantic data converter; dev server in memory")
    head = "".join(f"{'N=' + str(r['n']):>12}" for r in results)
    ratio_head = f"{f'{sizes[-1]}/{sizes[0]}':>10}" if len(results) > 1 else ""
    print(f"{'measure':<30}{head}{ratio_head}")
    for label, fn, fmt in ROWS:
        values = [fn(r) for r in results]
        ratio = f"{values[-1] / values[0]:>10.2f}" if len(values) > 1 and values[0] else ""
        print(f"{label:<30}" + "".join(f"{v:>12{fmt}}" for v in values) + ratio)
    for r in results:
        acts = ", ".join(f"{k}={v / r['n']:g}" for k, v in sorted(r["by_activity"].items()))
        print(f"N={r['n']}: per run {acts}; warm-up run {r['warmup_s']:.2f} s; load average "
              f"{r['load'][0]:.1f} -> {r['load'][1]:.1f} on {os.cpu_count()} cores; failed/timed-out wf tasks "
              f"{r['wft_failed_or_timed_out']}, activity failures {r['activity_retries_or_failures']}")
    if len(results) > 1:
        per = [r["wall_s"] / r["activities"] for r in results]
        print(f"overhead per activity N={sizes[-1]} vs N={sizes[0]}: {per[-1] * 1000:.2f} ms vs "
              f"{per[0] * 1000:.2f} ms (ratio {per[-1] / per[0]:.2f}; <1 = concurrency amortises round trips)")
    return 0 if all(r["ok"] == r["n"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
