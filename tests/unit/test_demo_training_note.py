"""The demo says how much of the train split its short fine-tune saw (customized-eval is a smoke check there)."""

from __future__ import annotations

from flywheel.config import Settings
from flywheel.jobdoc import CustomizationDoc, DatasetDoc, JobDocument, NimDoc
from starter.demo import training_scale_note


def doc(steps: int) -> JobDocument:
    nims = [NimDoc(model_name="gemma", customizations=[CustomizationDoc(steps_completed=steps)] if steps else []),
            NimDoc(model_name="qwen")]
    return JobDocument(id="j", workload_id="w", client_id="c", nims=nims,
                       datasets=[DatasetDoc(name="d-train", num_records=220, split="train")])


def test_note_counts_the_examples_the_adapter_saw():
    note = training_scale_note(doc(12), Settings(training_config={"batch_size": 2}))
    assert note is not None and "12 steps, 24 of 220 training examples" in note


def test_no_note_without_a_customization():
    assert training_scale_note(doc(0), Settings()) is None
