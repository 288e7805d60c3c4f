"""MLflow tracking against a real SQLite-backed MLflow store."""

import pytest

from flywheel.config import MLflowConfig
from flywheel.jobdoc import EvaluationDoc, JobDocument, NimDoc
from flywheel.tracking import log_job


def _doc() -> JobDocument:
    return JobDocument(
        id="j1", workload_id="w", client_id="c", manifest_hash="abc",
        nims=[NimDoc(model_name="m", evaluations=[
            EvaluationDoc(eval_type="base-eval", scores={"function_name": 0.5, "tool_calling_correctness": None},
                          latency_p50_ms=12.0, num_records=4),
            EvaluationDoc(eval_type="icl-eval"),  # no scores yet: not logged
        ])],
    )


def test_disabled_logs_nothing(tmp_path):
    assert log_job(_doc(), MLflowConfig(enabled=False, tracking_uri=f"sqlite:///{tmp_path}/m.db")) == {}


@pytest.mark.slow
def test_logs_scores_once_per_eval(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is part of the [local] extra")
    cfg = MLflowConfig(enabled=True, tracking_uri=f"sqlite:///{tmp_path}/m.db")
    first = log_job(_doc(), cfg)
    assert list(first) == ["m/base-eval"]
    assert log_job(_doc(), cfg) == first  # idempotent: a retried activity reuses the run
    run = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri).get_run(first["m/base-eval"].split("/")[-1])
    assert run.data.metrics["function_name"] == 0.5
    assert "tool_calling_correctness" not in run.data.metrics
    assert run.data.params["manifest_hash"] == "abc"


@pytest.mark.slow
def test_register_champion_points_the_alias_at_the_promoted_version(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is part of the [local] extra")
    from flywheel.tracking import register_champion

    cfg = MLflowConfig(enabled=True, tracking_uri=f"sqlite:///{tmp_path}/m.db")
    doc = _doc()
    doc.nims[0].evaluations[0].mlflow_uri = log_job(doc, cfg)["m/base-eval"]
    first = register_champion(doc, "m", "base-eval", cfg)
    assert first == {"registered_model": "data-flywheel-w-c", "version": "1", "alias": "champion"}
    assert register_champion(doc, "m", "base-eval", cfg) == first  # a retry does not add a version
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    version = client.get_model_version_by_alias("data-flywheel-w-c", "champion")
    assert version.tags["job_id"] == "j1" and version.run_id == doc.nims[0].evaluations[0].mlflow_uri.split("/")[-1]
    later = doc.model_copy(update={"id": "j2"}, deep=True)
    assert register_champion(later, "m", "base-eval", cfg)["version"] == "2"
    assert client.get_model_version_by_alias("data-flywheel-w-c", "champion").tags["job_id"] == "j2"


@pytest.mark.slow
def test_remove_job_runs_deletes_the_jobs_runs_and_keeps_the_promoted_version(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is part of the [local] extra")
    from flywheel.tracking import register_champion, remove_job_runs

    cfg = MLflowConfig(enabled=True, tracking_uri=f"sqlite:///{tmp_path}/m.db")
    promoted = _doc()
    promoted.nims[0].evaluations[1].scores = {"function_name": 0.7}  # two logged runs: base-eval and icl-eval
    uris = log_job(promoted, cfg)
    promoted.nims[0].evaluations[0].mlflow_uri = uris["m/base-eval"]
    register_champion(promoted, "m", "base-eval", cfg)  # registered from the base-eval run
    other = promoted.model_copy(update={"id": "j2"}, deep=True)
    other_uris = log_job(other, cfg)

    report = remove_job_runs("j1", "w", "c", cfg)
    base_run, icl_run = (uris[k].split("/")[-1] for k in ("m/base-eval", "m/icl-eval"))
    assert [r.name for r in report.removed] == [f"{icl_run} (j1-m-icl-eval)"]
    assert [(k.kind, k.name, k.reason) for k in report.kept] == [
        ("mlflow_model_version", "data-flywheel-w-c version 1 (alias champion)", "promoted model version"),
        ("mlflow_run", f"{base_run} (j1-m-base-eval)", "source of the promoted model version")]
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    assert client.get_run(icl_run).info.lifecycle_stage == "deleted"
    assert client.get_run(base_run).info.lifecycle_stage == "active"
    assert client.get_model_version_by_alias("data-flywheel-w-c", "champion").tags["job_id"] == "j1"
    assert all(client.get_run(u.split("/")[-1]).info.lifecycle_stage == "active" for u in other_uris.values())
    again = remove_job_runs("j1", "w", "c", cfg)  # a retry: the deleted run is not listed again
    assert again.removed == [] and len(again.kept) == 2
    assert remove_job_runs("j2", "w", "c", MLflowConfig(enabled=False)).removed == []  # MLflow off: nothing
