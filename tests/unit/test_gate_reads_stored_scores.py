"""The gate's paired tests read the per-record scores the evaluator stored beside its predictions in the
artifact store (a run's predictions URIs are store URIs, not local paths): McNemar runs on a real run's
document, and predictions from elsewhere simply have no paired tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from activities.persistence import stored_record_scores
from flywheel.aggregation import aggregate
from flywheel.artifacts import open_artifact_store
from flywheel.config import Settings
from flywheel.jobdoc import EvaluationDoc, JobDocument, NimDoc

METRIC = "function_name_and_args_accuracy"


def scores_file(outcomes: list[int]) -> bytes:
    return "".join(json.dumps({"record_id": f"r{i}", METRIC: v}) + "\n" for i, v in enumerate(outcomes)).encode()


def test_paired_tests_from_scores_in_the_artifact_store(tmp_path):
    settings = Settings(platform={"data_dir": str(tmp_path / "data")},
                        artifacts={"root": (tmp_path / "artifacts").as_uri()})
    store = open_artifact_store(settings)
    # icl right on 12 records base got wrong, base right on 1 icl got wrong: a clear paired difference.
    base = [1] * 5 + [0] * 12 + [1] + [0] * 2
    icl = [1] * 5 + [1] * 12 + [0] + [0] * 2
    evaluations = []
    for eval_type, outcomes in (("base-eval", base), ("icl-eval", icl)):
        store.put(f"predictions/cand-{eval_type}.scores.jsonl", scores_file(outcomes))
        evaluations.append(EvaluationDoc(eval_type=eval_type, num_records=len(outcomes), finished_at=datetime.now(UTC),
                                         scores={METRIC: sum(outcomes) / len(outcomes)},
                                         predictions_uri=store.uri(f"predictions/cand-{eval_type}.jsonl")))
    doc = JobDocument(id="j", workload_id="w", client_id="c", nims=[NimDoc(model_name="cand", evaluations=evaluations)])

    (paired,) = aggregate(doc, settings, stored_record_scores(settings)).gate["paired"]
    assert (paired["a_only"], paired["b_only"], paired["n_paired"]) == (1, 12, 20)
    assert paired["significant"] and paired["p_value"] < 0.01

    # Without the reader (or with predictions stored elsewhere) the arms come from means: no paired tests.
    assert aggregate(doc, settings).gate["paired"] == []
    elsewhere = doc.model_copy(deep=True)
    for ev in elsewhere.nims[0].evaluations:
        ev.predictions_uri = "s3://another-bucket/predictions/x.jsonl"
    assert aggregate(elsewhere, settings, stored_record_scores(settings)).gate["paired"] == []
