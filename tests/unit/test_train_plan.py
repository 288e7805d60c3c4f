"""The LoRA trainer's deterministic plan: data order, positions, step counts (no model)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from flywheel.config import LoRAConfig, NIMConfig, TrainingConfig
from flywheel.platforms.local.train_state import Plan, run_fingerprint
from flywheel.types import CustomizationSpec, DatasetRef


def spec(**training) -> CustomizationSpec:
    return CustomizationSpec(
        name="t", nim=NIMConfig(model_name="m"), train=DatasetRef(name="t", split="train", uri="x", num_records=1),
        training=TrainingConfig(**training), lora=LoRAConfig(), output_model="o")


def test_steps_epochs_and_cap() -> None:
    plan = Plan.make(10, spec(epochs=2, batch_size=4), device_type="cpu", seed=1)
    assert (plan.steps_per_epoch, plan.total_steps, plan.micro_batch, plan.accumulation) == (3, 6, 1, 4)
    assert Plan.make(10, spec(epochs=2, batch_size=4, max_steps=4), device_type="cpu", seed=1).total_steps == 4
    assert Plan.make(10, spec(epochs=5, batch_size=4, max_steps=99), device_type="cpu", seed=1).total_steps == 15
    gpu = Plan.make(100, spec(batch_size=16), device_type="cuda", seed=1)
    assert gpu.micro_batch == 8
    accum = Plan.make(100, spec(batch_size=16, gradient_accumulation_steps=4), device_type="cpu", seed=1)
    assert (accum.micro_batch, accum.accumulation) == (4, 4)
    assert Plan.make(3, spec(batch_size=16), device_type="cpu", seed=1).batch_size == 3


def test_each_epoch_visits_every_example_once_in_a_seeded_order() -> None:
    plan = Plan.make(10, spec(epochs=2, batch_size=4), device_type="cpu", seed=7)
    epoch0 = [i for step in (1, 2, 3) for i in plan.batch_indices(step)[1]]
    epoch1 = [i for step in (4, 5, 6) for i in plan.batch_indices(step)[1]]
    assert sorted(epoch0) == sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1  # reshuffled per epoch
    assert [plan.batch_indices(s)[0] for s in range(1, 7)] == [0, 0, 0, 1, 1, 1]
    again = Plan.make(10, spec(epochs=2, batch_size=4), device_type="cpu", seed=7)
    assert [again.batch_indices(s) for s in range(1, 7)] == [plan.batch_indices(s) for s in range(1, 7)]
    other = Plan.make(10, spec(epochs=2, batch_size=4), device_type="cpu", seed=8)
    assert [other.batch_indices(s) for s in range(1, 4)] != [plan.batch_indices(s) for s in range(1, 4)]


def test_position_after_steps() -> None:
    plan = Plan.make(10, spec(epochs=2, batch_size=4), device_type="cpu", seed=1)
    assert plan.position(0) == (0, 0)
    assert plan.position(2) == (0, 8)
    assert plan.position(3) == (1, 0)
    assert plan.position(5) == (1, 8)


def test_fingerprint_ignores_checkpoint_frequency_only(tmp_path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x" * 10)
    rows = [{"a": 1}]
    base = run_fingerprint(spec(), model, rows, 42)
    assert run_fingerprint(spec(checkpoint_every_steps=99), model, rows, 42) == base
    assert run_fingerprint(spec(learning_rate=0.5), model, rows, 42) != base
    assert run_fingerprint(spec(), model, [{"a": 2}], 42) != base
    assert run_fingerprint(spec(), model, rows, 43) != base
