"""DELETE of a job on the local platform (flywheel.run_removal): a deployment record its teardown missed, this
host's files under data_dir and the artifact store's copies go; a retry after a partial removal finishes the
rest without error and lists only what it removed itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

from flywheel.artifacts import open_artifact_store
from flywheel.config import MLflowConfig, Settings
from flywheel.platforms.local.datasets import write_splits
from flywheel.platforms.local.platform import LocalPlatform
from flywheel.removal import CandidateResources, RunResources
from flywheel.run_removal import remove_run

RUN = "flywheel-w-c-j1"
CAND = f"{RUN}-cand-m"
ROWS = [{"messages": [{"role": "user", "content": "hi"}]}]


def resources() -> RunResources:
    return RunResources(job_id="j1", workflow_id=RUN, run_key=RUN, workload_id="w", client_id="c",
                        candidates=[CandidateResources(model_name="m", keys=[CAND])])


def leave_behind(data_dir: Path, store) -> None:
    """What a finished run leaves on the local platform (and one thing of another run)."""
    write_splits(data_dir / "staging", RUN, {"eval": ROWS, "train": ROWS})
    write_splits(data_dir / "staging", "flywheel-w-c-j10", {"eval": ROWS})  # another run
    (data_dir / "predictions").mkdir()
    (data_dir / "predictions" / f"{CAND}-base-eval.jsonl").write_text("{}\n")
    (data_dir / "customizations" / f"{CAND}-customize" / "checkpoints").mkdir(parents=True)
    (data_dir / "reports" / "j1").mkdir(parents=True)
    (data_dir / "reports" / "j1" / "report.html").write_text("<html/>")
    # A deployment whose teardown failed: its record names a pid that is no model server (this test process).
    (data_dir / "deployments").mkdir(exist_ok=True)
    (data_dir / "deployments" / f"{CAND}-base.json").write_text(json.dumps({"pid": os.getpid(), "port": 1}))
    (data_dir / "deployments" / f"{CAND}-base.log").write_text("log")
    for key in (f"datasets/{RUN}/eval.jsonl", f"datasets/{CAND}-icl/icl.jsonl",
                f"predictions/{CAND}-base-eval.jsonl", f"customizations/{CAND}-customize/adapter.gguf",
                "reports/j1/report.html", "datasets/flywheel-w-c-j10/eval.jsonl"):
        store.put(key, key.encode())


async def test_a_retry_after_a_partial_removal_finishes_the_rest(tmp_path: Path) -> None:
    settings = Settings(platform={"kind": "local", "data_dir": str(tmp_path)})
    platform = LocalPlatform(settings)
    store = open_artifact_store(settings, remove_empty_dirs=True)
    leave_behind(tmp_path, store)

    # The first attempt got through the platform and the run's splits in the store, then failed.
    first = await platform.remove_run(resources())
    assert first.by_kind() == {"deployment": [f"{CAND}-base"], "data_dir": [
        f"staging/datasets/{RUN}", f"customizations/{CAND}-customize", f"predictions/{CAND}-base-eval.jsonl",
        f"deployments/{CAND}-base.log"]}
    assert store.delete_prefix(f"datasets/{RUN}") == [f"datasets/{RUN}/eval.jsonl"]

    retried = await remove_run(platform, store, tmp_path, MLflowConfig(), resources())
    assert retried.by_kind() == {"artifact": [f"datasets/{CAND}-icl/icl.jsonl",
                                              f"customizations/{CAND}-customize/adapter.gguf",
                                              "reports/j1/report.html", f"predictions/{CAND}-base-eval.jsonl"],
                                 "data_dir": ["reports/j1"]}
    assert retried.kept == []
    assert [i.key for i in store.list()] == ["datasets/flywheel-w-c-j10/eval.jsonl"]  # the other run's
    assert (tmp_path / "staging" / "datasets" / "flywheel-w-c-j10").is_dir()
    assert not (tmp_path / "deployments" / f"{CAND}-base.json").exists()
    assert (await remove_run(platform, store, tmp_path, MLflowConfig(), resources())).removed == []


def test_run_resources_from_the_job_document() -> None:
    from flywheel.jobdoc import CustomizationDoc, EvaluationDoc, JobDocument, NimDoc
    from workflows.models import (
        candidate_workflow_id,
        legacy_candidate_workflow_id,
        run_resource_keys,
        run_resources,
    )

    doc = JobDocument(id="j1", workload_id="w", client_id="c",
                      review={"decision": "promoted", "model_name": "org/a"},
                      nims=[NimDoc(model_name="org/a", gate={"passed": True, "eval_type": "customized-eval"},
                                   evaluations=[EvaluationDoc(eval_type="base-eval", nmp_uri="http://n/v1/evaluation/jobs/e1")],
                                   customizations=[CustomizationDoc(customized_model="ns/cust-a",
                                                                    nmp_uri="http://n/v1/customization/jobs/c1")]),
                            NimDoc(model_name="b")])
    wf = "flywheel-w-c-j1"
    res = run_resources(doc, wf)
    assert (res.run_key, res.workload_id, res.client_id) == (wf, "w", "c")
    a, b = res.candidates
    assert a.keys == run_resource_keys(wf, ["org/a"])[1] and len(a.keys) == 2  # current and legacy child ids
    assert {candidate_workflow_id(wf, "org/a"), legacy_candidate_workflow_id(wf, "org/a")} == set(a.keys)
    assert a.keep_customized and not b.keep_customized  # promoted on its customized evaluation
    assert a.customized_models == ["ns/cust-a", "customized-org-a@j1"]
    assert res.evaluation_job_uris == ["http://n/v1/evaluation/jobs/e1"]
    assert res.customization_job_uris == ["http://n/v1/customization/jobs/c1"]
    assert f"{a.keys[0]}-customized-eval" in res.evaluation_names() and f"{wf}-judge" in res.deployment_names()
    doc.nims[0].gate = {"passed": True, "eval_type": "base-eval"}  # promoted on its base model: weights go
    assert not run_resources(doc, wf).candidates[0].keep_customized
