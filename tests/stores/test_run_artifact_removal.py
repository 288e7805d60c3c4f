"""DELETE of a job removes every object its run wrote to the artifact store — over ``file://`` and ``s3://``
(moto's S3 server over real HTTP) — and nothing of another run, even one whose names start the same."""

from __future__ import annotations

import uuid

import pytest

from flywheel.artifacts import open_artifact_store
from flywheel.artifacts.run_removal import remove_run_artifacts
from flywheel.config import load_settings
from flywheel.removal import CUSTOMIZED_MODEL, PROMOTED, CandidateResources, RunResources
from tests.stores.test_artifact_store import CREDS, Backend, _boto, _s3_settings

RUN = "flywheel-w-c-j1"
OTHER = "flywheel-w-c-j10"  # shares RUN's name as a prefix: a loose prefix match would take it too
ALPHA, BETA = f"{RUN}-cand-alpha", f"{RUN}-cand-beta"


def resources() -> RunResources:
    return RunResources(job_id="j1", workflow_id=RUN, run_key=RUN, workload_id="w", client_id="c", candidates=[
        CandidateResources(model_name="alpha", keys=[ALPHA]),
        # beta was promoted on its customized evaluation: its adapter is the champion's and stays.
        CandidateResources(model_name="beta", keys=[BETA], keep_customized=True)])


RUN_KEYS = [
    f"datasets/{RUN}/eval.jsonl", f"datasets/{RUN}/train.jsonl", f"datasets/{ALPHA}-icl/icl.jsonl",
    f"datasets/{BETA}-mine/triplets.jsonl",
    f"predictions/{ALPHA}-base-eval.jsonl", f"predictions/{ALPHA}-base-eval.judge.jsonl",
    f"predictions/{BETA}-customized-eval.jsonl",
    f"customizations/{ALPHA}-customize/checkpoints/step-000001/weights.bin",
    f"customizations/{ALPHA}-customize/checkpoints/step-000001/COMPLETE",
    f"customizations/{ALPHA}-customize/adapter.gguf", f"customizations/{ALPHA}-customize/result.json",
    f"customizations/{BETA}-customize/checkpoints/step-000001/weights.bin",
    f"deployments/{ALPHA}-base.json", f"deployments/{RUN}-judge.json",
    "reports/j1/report.html", "reports/j1/job.json",
]
KEPT = [f"customizations/{BETA}-customize/adapter.gguf", f"customizations/{BETA}-customize/result.json"]
OTHER_KEYS = [
    f"datasets/{OTHER}/eval.jsonl", f"datasets/{OTHER}-cand-alpha-icl/icl.jsonl",
    f"predictions/{OTHER}-cand-alpha-base-eval.jsonl", f"customizations/{OTHER}-cand-alpha-customize/adapter.gguf",
    f"deployments/{OTHER}-cand-alpha-base.json", "reports/j10/report.html",
    f"predictions/{ALPHA}-base-eval-notes.jsonl",  # not a name the run writes
]
# Data an interrupted put left without its checksum: invisible to list(), removed all the same.
UNCOMMITTED = f"datasets/{RUN}/val.jsonl"


@pytest.fixture(params=["file", "s3"])
def backend(request, tmp_path) -> Backend:
    if request.param == "file":
        root = tmp_path / "artifacts"
        settings = load_settings(environ={}, overrides={"artifacts": {"root": root.as_uri()}})
        return Backend("file", open_artifact_store(settings, remove_empty_dirs=True), path=root)
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"b{uuid.uuid4().hex[:12]}"
    s3 = _boto(endpoint)
    s3.create_bucket(Bucket=bucket)
    settings = load_settings(environ={}, overrides=_s3_settings(endpoint, bucket))
    store = open_artifact_store(settings, environ=CREDS, remove_empty_dirs=True)
    return Backend("s3", store, s3=s3, bucket=bucket, prefix="flywheel/root")


def test_removes_the_runs_objects_and_nothing_else(backend):
    store = backend.store
    for key in RUN_KEYS + KEPT + OTHER_KEYS:
        store.put(key, key.encode())
    backend.write(UNCOMMITTED, b"half")

    report = remove_run_artifacts(store, resources())

    assert sorted(r.name for r in report.removed) == sorted(RUN_KEYS + [UNCOMMITTED])
    assert {r.kind for r in report.removed} == {"artifact"}
    assert [(k.kind, k.name, k.reason) for k in report.kept] == [
        (CUSTOMIZED_MODEL, store.uri(key), PROMOTED) for key in KEPT]
    survivors = sorted(OTHER_KEYS + KEPT)
    assert sorted(info.key for info in store.list()) == survivors
    assert backend.names() == set(survivors) | {f"{k}.sha256" for k in survivors}  # nothing else left, raw
    if backend.kind == "file":  # the emptied directories went too
        assert not (backend.path / "datasets" / RUN).exists()
        assert not (backend.path / "customizations" / f"{ALPHA}-customize").exists()
        assert not (backend.path / "customizations" / f"{BETA}-customize" / "checkpoints").exists()

    again = remove_run_artifacts(store, resources())  # a retry, or a second clean-up: nothing left, no error
    assert again.removed == [] and len(again.kept) == 2


def test_a_workflow_id_no_key_allows_is_skipped(backend):
    """Names built from an id with characters keys refuse (``a/b``, ``..``) were never written: no error."""
    weird = RunResources(job_id="j2", workflow_id="flywheel-w-c-../x", run_key="flywheel-w-c-x-0123456789")
    backend.store.put("datasets/flywheel-w-c-x/eval.jsonl", b"other run")
    assert remove_run_artifacts(backend.store, weird).removed == []
    assert [i.key for i in backend.store.list()] == ["datasets/flywheel-w-c-x/eval.jsonl"]
