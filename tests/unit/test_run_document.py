"""The run document's pure updates (what FlywheelRun applies to its job document)."""

from __future__ import annotations

from datetime import UTC, datetime

from flywheel.jobdoc import CustomizationDoc, EvaluationDoc, JobDocument, NimDoc, NimStatus, RunStatus, Stage
from flywheel.run_document import (
    apply_candidate_update,
    failed_candidate,
    mark_run_cancelled,
    not_reviewable_reason,
    unknown_candidate_reason,
)
from flywheel.vocabulary import CustomizationStatus, EvalType

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _doc(*nims: NimDoc, stage: Stage = Stage.evaluating) -> JobDocument:
    return JobDocument(id="j1", workload_id="w", client_id="c", status=RunStatus.running, stage=stage, nims=list(nims))


def test_cancel_marks_every_unfinished_step_and_keeps_finished_ones() -> None:
    done = NimDoc(model_name="a", status=NimStatus.completed)
    running = NimDoc(model_name="b", status=NimStatus.running_evals,
                     customizations=[CustomizationDoc(status=CustomizationStatus.running)],
                     evaluations=[EvaluationDoc(eval_type=EvalType.base),
                                  EvaluationDoc(eval_type=EvalType.icl, finished_at=NOW)])
    doc = _doc(done, running)
    mark_run_cancelled(doc, NOW)
    assert (doc.status, doc.stage, doc.error, doc.finished_at) == (RunStatus.cancelled, Stage.cancelled, "cancelled",
                                                                   NOW)
    assert done.status is NimStatus.completed and running.status is NimStatus.cancelled
    assert running.customizations[0].status is CustomizationStatus.cancelled
    assert running.customizations[0].finished_at == NOW
    assert [e.error for e in running.evaluations] == ["cancelled", None]


def test_a_finished_candidate_ignores_late_reports() -> None:
    doc = _doc(NimDoc(model_name="a", status=NimStatus.failed, error="boom"), NimDoc(model_name="b"))
    apply_candidate_update(doc, NimDoc(model_name="a", status=NimStatus.running_evals))
    apply_candidate_update(doc, NimDoc(model_name="b", status=NimStatus.running_evals))
    assert [(n.status, n.error) for n in doc.nims] == [(NimStatus.failed, "boom"), (NimStatus.running_evals, None)]


def test_a_failed_child_keeps_the_document_it_sent() -> None:
    sent = NimDoc(model_name="a", error="its own reason").model_dump(mode="json")
    assert failed_candidate(NimDoc(model_name="a"), [sent], "fallback").error == "its own reason"
    nim = failed_candidate(NimDoc(model_name="a"), [], "ChildWorkflowError: x")
    assert (nim.status, nim.error) == (NimStatus.failed, "ChildWorkflowError: x")


def test_review_refusals_name_the_stage_and_the_candidates_with_results() -> None:
    assert not_reviewable_reason(_doc(), False, "promote") == (
        "promote: job j1 is in stage 'evaluating'; promote/reject is only possible in stage 'awaiting_review'")
    assert not_reviewable_reason(None, False, "reject").startswith("reject: job ? is in stage 'pending'")
    waiting = _doc(NimDoc(model_name="a", evaluations=[EvaluationDoc(eval_type=EvalType.base, scores={"x": 1.0})]),
                   NimDoc(model_name="b"), stage=Stage.awaiting_review)
    assert not_reviewable_reason(waiting, False, "promote") is None
    assert not_reviewable_reason(waiting, True, "promote") is not None
    assert unknown_candidate_reason(waiting, "a") is None
    assert unknown_candidate_reason(waiting, "b") == (
        "promote: model 'b' is not a candidate with results in job j1 (candidates with results: a)")
