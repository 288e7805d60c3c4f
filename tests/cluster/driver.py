"""What the cluster test does on a host, as one process in that host's namespace (the test process itself
lives in the root namespace and cannot reach the test subnet).

    python -m tests.cluster.driver load-logs CONFIG [compact]    sample logs → the Elasticsearch log store
    python -m tests.cluster.driver start CONFIG                  start a FlywheelRun; prints {"job_id", "workflow_id"}
    python -m tests.cluster.driver pending CONFIG WF_ID MODEL    run status + pending activities (with worker ids)
    python -m tests.cluster.driver deployments CONFIG            local deployment records: name → serving host
    python -m tests.cluster.driver finish CONFIG WORKFLOW_ID     wait for the result; prints the document, the
                                                                 MongoDB copy and the artifact keys (JSON)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid

from flywheel.config import Settings, load_settings
from tests.helpers.sample_logs import SAMPLE_CLIENT, SAMPLE_WORKLOAD, load_sample_logs
from workflows.models import ActivityTimeouts

# Small timeouts: a cut-off worker's activity is noticed within a heartbeat timeout, not production's minutes.
TIMEOUTS = {
    "nemo_v1": ActivityTimeouts(deploy_heartbeat_s=6, evaluate_heartbeat_s=6, customize_heartbeat_s=6,
                                short_start_to_close_s=20, retry_initial_interval_s=0.5, retry_max_interval_s=2.0,
                                max_attempts=10),
    # A real model on shared cores: heartbeats can lag, short activities take longer.
    "local": ActivityTimeouts(deploy_heartbeat_s=20, evaluate_heartbeat_s=20, customize_heartbeat_s=20,
                              short_start_to_close_s=120, retry_initial_interval_s=1.0, retry_max_interval_s=3.0,
                              max_attempts=10),
}


async def _client(settings: Settings):
    from workers.connection import connect

    return await connect(settings)


async def start(settings: Settings) -> dict:
    from workflows.flywheel_run import FlywheelRun
    from workflows.models import FlywheelJobInput, flywheel_workflow_id

    client = await _client(settings)
    job_id = uuid.uuid4().hex[:8]
    wf_id = flywheel_workflow_id(SAMPLE_WORKLOAD, SAMPLE_CLIENT, job_id)
    inp = FlywheelJobInput(job_id=job_id, workload_id=SAMPLE_WORKLOAD, client_id=SAMPLE_CLIENT, settings=settings,
                           review_timeout_s=0, timeouts=TIMEOUTS[settings.platform.kind])
    await client.start_workflow(FlywheelRun.run, inp, id=wf_id, task_queue=settings.temporal.task_queues.orchestrator)
    return {"job_id": job_id, "workflow_id": wf_id}


async def pending(settings: Settings, wf_id: str, model: str) -> dict:
    from temporalio.service import RPCError

    from workflows.models import candidate_workflow_id

    client = await _client(settings)
    out: dict = {"status": None, "pending": []}
    desc = await client.get_workflow_handle(wf_id).describe()
    out["status"] = desc.status.name if desc.status else None
    # The run's own activities and its CandidateRun child's (deploy/evaluate/customize).
    for run_id in (wf_id, candidate_workflow_id(wf_id, model)):
        try:
            raw = await client.get_workflow_handle(run_id).describe()
        except RPCError:  # the child has not started yet
            continue
        for act in raw.raw_description.pending_activities:
            out["pending"].append({"workflow": run_id, "id": act.activity_id, "type": act.activity_type.name,
                                   "identity": act.last_worker_identity, "attempt": act.attempt,
                                   "state": int(act.state)})
    return out


async def finish(settings: Settings, wf_id: str, timeout_s: float) -> dict:
    from flywheel.artifacts import open_artifact_store
    from flywheel.jobdoc import JobDocument
    from flywheel.jobstore import open_jobstore

    client = await _client(settings)
    doc = await asyncio.wait_for(client.get_workflow_handle(wf_id, result_type=JobDocument).result(), timeout_s)
    store = open_jobstore(settings)
    try:
        stored = store.get(doc.id)
    finally:
        store.close()
    keys = [info.key for info in open_artifact_store(settings).list()]
    return {"doc": doc.model_dump(mode="json"), "stored": stored.model_dump(mode="json") if stored else None,
            "artifacts": keys}


def deployments(settings: Settings) -> dict:
    """The local platform's deployment records in the artifact store: name → the host serving it."""
    from flywheel.artifacts import open_artifact_store

    store = open_artifact_store(settings)
    out = {}
    for info in store.list("deployments"):
        if info.key.endswith(".json"):
            record = json.loads(store.read_bytes(info.key))
            out[record["name"]] = record["host"]
    return out


def main() -> None:
    command, config = sys.argv[1], sys.argv[2]
    settings = load_settings(path=config)
    if command == "load-logs":
        if sys.argv[3:] == ["compact"]:  # short records for the real model (tests/integration/test_training_crash)
            from flywheel.ingest import load_jsonl
            from flywheel.logstore import open_logstore
            from tests.integration.test_training_crash import compact_lines

            with open_logstore(settings) as store:
                loaded = load_jsonl(compact_lines(), store).loaded
        else:
            load_sample_logs(settings)
            loaded = -1
        result: dict = {"loaded": loaded}
    elif command == "start":
        result = asyncio.run(start(settings))
    elif command == "pending":
        result = asyncio.run(pending(settings, sys.argv[3], sys.argv[4]))
    elif command == "deployments":
        result = deployments(settings)
    elif command == "finish":
        result = asyncio.run(finish(settings, sys.argv[3], float(sys.argv[4])))
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result), flush=True)
    # Skip interpreter finalization: the Temporal client's native runtime can abort while its threads are torn
    # down (seen as "PyGILState_Release ... finalizing"), turning a finished command into a failure.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
