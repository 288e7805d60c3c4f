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
