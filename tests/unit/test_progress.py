"""Typed progress reports: what each platform emits is what the live job view reads."""

from __future__ import annotations

from flywheel.jobdoc import CustomizationDoc, EvaluationDoc, NimDoc
from flywheel.progress import EvaluationProgress, TrainingProgress
from starter.live_progress import apply_customization_progress, apply_evaluation_progress


def nim_with(eval_type: str) -> NimDoc:
    return NimDoc(model_name="m", evaluations=[EvaluationDoc(eval_type=eval_type)],
                  customizations=[CustomizationDoc(status="running")])


def test_counted_evaluation_progress_shows_live() -> None:
    nim = nim_with("base-eval")
    apply_evaluation_progress(nim, {"eval_type": "base-eval", **EvaluationProgress(done=30, total=120).details()})
    assert nim.evaluations[0].progress == 25.0


def test_percentage_only_evaluation_progress_shows_live() -> None:
    """NeMo v1 reports only a percentage: it must show too."""
    nim = nim_with("icl-eval")
    heartbeat = {"eval_type": "icl-eval", **EvaluationProgress(status="running", progress=40.0).details()}
    apply_evaluation_progress(nim, heartbeat)
    assert nim.evaluations[0].progress == 40.0


def test_remote_training_loss_and_steps_show_live() -> None:
    """NeMo v1's percentage_done / steps_completed / train_loss, mapped by the platform, reach the document."""
    nim = nim_with("customized-eval")
    heartbeat = TrainingProgress(progress=50.0, epochs_completed=1, steps_completed=5, loss=0.75).details()
    apply_customization_progress(nim, heartbeat)
    cust = nim.customizations[-1]
    assert (cust.progress, cust.steps_completed, cust.epochs_completed, cust.loss) == (50.0, 5, 1, 0.75)


def test_local_training_report_counts_steps() -> None:
    nim = nim_with("customized-eval")
    heartbeat = TrainingProgress(phase="training", step=5, total_steps=20, epoch=0.5, epochs_completed=0,
                                 loss=1.25, checkpoint="file:///ck/step-5").details()
    apply_customization_progress(nim, heartbeat)
    cust = nim.customizations[-1]
    assert (cust.progress, cust.steps_completed, cust.epochs_completed, cust.loss) == (25.0, 5, 0, 1.25)
    assert cust.checkpoint == "file:///ck/step-5"


def test_details_keep_counts_and_extras_as_reported() -> None:
    details = EvaluationProgress(done=3, total=4, errors=0, job="j").details()
    assert details == {"done": 3, "total": 4, "errors": 0, "job": "j"}
    assert isinstance(details["done"], int)


def test_unreadable_details_show_nothing() -> None:
    nim = nim_with("base-eval")
    apply_evaluation_progress(nim, {"eval_type": "base-eval", "done": "many", "total": 10})
    assert nim.evaluations[0].progress == 0.0
