"""What the cluster test does on a host, as one process in that host's namespace (the test process itself
lives in the root namespace and cannot reach the test subnet). The run itself is started and read through the
starter API (tests/cluster/api_watch.py and the CLI's ``remote`` commands); these are the test's own loads and
observations.

    python -m tests.cluster.driver load-logs CONFIG [compact]    sample logs → the Elasticsearch log store
    python -m tests.cluster.driver pending CONFIG WF_ID MODEL    run status + pending activities (with worker ids),
                                                                 from Temporal: which host runs what, to cut it off
    python -m tests.cluster.driver deployments CONFIG            local deployment records: name → serving host
    python -m tests.cluster.driver stored CONFIG JOB_ID          the job document as stored in MongoDB and the
                                                                 artifact store's keys (JSON)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from flywheel.config import Settings, load_settings
from tests.helpers.sample_logs import load_sample_logs


async def _client(settings: Settings):
    from workers.connection import connect

    return await connect(settings)


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


def stored(settings: Settings, job_id: str) -> dict:
    from flywheel.artifacts import open_artifact_store
    from flywheel.jobstore import open_jobstore

    store = open_jobstore(settings)
    try:
        doc = store.get(job_id)
    finally:
        store.close()
    keys = [info.key for info in open_artifact_store(settings).list()]
    return {"stored": doc.model_dump(mode="json") if doc else None, "artifacts": keys}


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
    elif command == "pending":
        result = asyncio.run(pending(settings, sys.argv[3], sys.argv[4]))
    elif command == "deployments":
        result = deployments(settings)
    elif command == "stored":
        result = stored(settings, sys.argv[3])
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result), flush=True)
    # Skip interpreter finalization: the Temporal client's native runtime can abort while its threads are torn
    # down (seen as "PyGILState_Release ... finalizing"), turning a finished command into a failure.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
