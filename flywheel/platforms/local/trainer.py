"""LoRA SFT on the local platform (peft over transformers), resumable and cancellable.

:func:`train` fine-tunes the candidate's own GGUF weights (dequantized by transformers) on the
production model's answers, in the exact prompt format the llama.cpp server uses
(:mod:`flywheel.platforms.local.sft_data`), and returns a GGUF LoRA adapter the server loads
with ``--lora`` (:mod:`flywheel.platforms.local.lora_export`).

Durability. Every ``training.checkpoint_every_steps`` steps, at the final step, and when asked
to stop (``should_stop()``, :func:`request_stop`, or SIGTERM when called on the main thread) the
adapter, optimizer, scheduler, RNG states and data position are written atomically to
``work_dir/checkpoints/step-NNNNNN`` (:mod:`flywheel.platforms.local.checkpoints`, newest 2
kept). A later call with the same inputs resumes from the newest complete checkpoint and
continues with the next step: no optimizer step is repeated, and the result equals an
uninterrupted run's. A stop request is honoured between micro-batches (the partial step is
discarded), so cancellation takes at most one micro-batch. A finished run writes
``work_dir/result.json``; calling again returns it without training.

Layout of ``work_dir``: ``checkpoints/``, ``adapter/`` (peft), ``adapter.gguf`` (served),
``result.json``, ``.train.lock`` (one trainer per work dir; a second gets a retryable error).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flywheel.platforms.local import checkpoints as ckpts
from flywheel.platforms.local import sft_data
from flywheel.platforms.local.lora_export import check_base, export_gguf_adapter
from flywheel.progress import TrainingProgress
from flywheel.types import CustomizationResult, CustomizationSpec, PlatformError, ProgressFn

log = logging.getLogger(__name__)

DEFAULT_SEED = 42
KEEP_CHECKPOINTS = 2
VAL_MAX_EXAMPLES = 32
MAX_GRAD_NORM = 1.0

_STOP = threading.Event()


class TrainingStopped(Exception):
    """Training stopped on request after saving a checkpoint; calling :func:`train` again resumes."""

    def __init__(self, step: int, checkpoint: str | None, reason: str) -> None:
        super().__init__(f"training stopped at step {step} ({reason}); checkpoint: {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint
        self.reason = reason


def request_stop() -> None:
    """Ask running trainings in this process to checkpoint and stop (e.g. from a worker's shutdown hook)."""
    _STOP.set()


def _config_error(message: str) -> PlatformError:
    return PlatformError(message, retryable=False, error_type="TrainingConfigError")


def validate_spec(spec: CustomizationSpec) -> None:
    if spec.training.training_type.lower() != "sft":
        raise _config_error(f"training_type {spec.training.training_type!r} is not supported by the local "
                            f"trainer (only 'sft')")
    if spec.training.finetuning_type.lower() != "lora":
        raise _config_error(f"finetuning_type {spec.training.finetuning_type!r} is not supported by the local "
                            f"trainer (only 'lora')")


@contextmanager
def _exclusive(work_dir: Path) -> Iterator[None]:
    with open(work_dir / ".train.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PlatformError(f"another trainer is running in {work_dir} (an earlier attempt still running?)",
                                retryable=True, error_type="TrainingBusy") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _sigterm_requests_stop() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed on the main thread; callers use should_stop
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: _STOP.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _read_result(work_dir: Path, fingerprint: str) -> CustomizationResult | None:
    try:
        saved = json.loads((work_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if saved.get("fingerprint") != fingerprint:
        return None
    result = CustomizationResult.model_validate(saved["result"])
    return result if Path(result.adapter_uri).is_file() else None


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def train(spec: CustomizationSpec, *, model_path: Path, work_dir: Path, rows_train: list[dict],
          rows_val: list[dict] | None = None, progress: ProgressFn | None = None,
          should_stop: Callable[[], bool] | None = None, resume: bool = True, seed: int = DEFAULT_SEED,
          cache_root: Path | None = None) -> CustomizationResult:
    """Fine-tune a LoRA adapter for ``spec`` on ``rows_train``; see the module docstring.

    Raises :class:`TrainingStopped` when stopped (checkpoint saved), :class:`PlatformError` with
    ``retryable=False`` and ``error_type`` ``TrainingConfigError`` / ``OutOfMemory`` /
    ``LoRAExportError`` for permanent failures. ``resume=False`` discards existing checkpoints.
    """
    validate_spec(spec)
    model_path, work_dir = Path(model_path), Path(work_dir)
    if not model_path.is_file():
        raise _config_error(f"base model file not found: {model_path}")
    if not rows_train:
        raise _config_error("no training records")
    work_dir.mkdir(parents=True, exist_ok=True)
    _STOP.clear()
    with _exclusive(work_dir), _sigterm_requests_stop():
        try:
            return _train(spec, model_path, work_dir, rows_train, rows_val, progress, should_stop, resume,
                          seed, cache_root)
        except MemoryError as exc:
            raise PlatformError(f"out of host memory training {spec.nim.model_name} at max_seq_length="
                                f"{spec.training.max_seq_length}, batch_size={spec.training.batch_size}: lower them",
                                retryable=False, error_type="OutOfMemory") from exc
        except Exception as exc:
            import torch

            if isinstance(exc, torch.OutOfMemoryError):
                raise PlatformError(f"out of GPU memory training {spec.nim.model_name} at max_seq_length="
                                    f"{spec.training.max_seq_length}, batch_size={spec.training.batch_size} "
                                    f"(micro-batches): lower max_seq_length or set gradient_accumulation_steps",
                                    retryable=False, error_type="OutOfMemory") from exc
            raise


def _training_reports(progress: ProgressFn | None) -> ProgressFn:
    """Each report checked as a :class:`TrainingProgress` (the shape the live job view reads)."""
    def emit(fields: dict[str, Any]) -> None:
        if progress is not None:
            progress(TrainingProgress(**fields).details())

    return emit


def _train(spec: CustomizationSpec, model_path: Path, work_dir: Path, rows_train: list[dict],  # noqa: C901
           rows_val: list[dict] | None, progress: ProgressFn | None, should_stop: Callable[[], bool] | None,
           resume: bool, seed: int, cache_root: Path | None) -> CustomizationResult:
    import torch
    from transformers import get_linear_schedule_with_warmup

    # Lazy, like torch above: these modules import torch at load time; this module must stay importable
    # (request_stop, TrainingStopped) on workers without the training stack.
    from flywheel.platforms.local import hf_model
    from flywheel.platforms.local import train_state as ts

    emit = _training_reports(progress)
    fingerprint = ts.run_fingerprint(spec, model_path, rows_train, seed)
    finished = _read_result(work_dir, fingerprint) if resume else None
    if finished is not None:
        log.info("training %s already finished: %s", spec.name, finished.adapter_uri)
        emit({"phase": "finished", "step": finished.steps_completed, "total_steps": finished.steps_completed,
              "checkpoint": None, "loss": finished.final_loss})
        return finished

    ckpt_root = work_dir / "checkpoints"
    start = ckpts.find_newest(ckpt_root) if resume else None
    if not resume and ckpt_root.exists():
        shutil.rmtree(ckpt_root)
    if start is not None and start.state.get("fingerprint") != fingerprint:
        stale = work_dir / f"checkpoints.stale-{int(time.time())}"
        log.warning("checkpoints in %s were made with other inputs; moved to %s, starting over", ckpt_root, stale)
        ckpt_root.rename(stale)
        start = None

    check_base(model_path)  # an adapter we could not serve is not worth training
    device = hf_model.resolve_device(spec.device)
    dtype = hf_model.dtype_for(device)
    log.info("training %s on %s (%s); %s", spec.name, device, dtype,
             f"resuming from step {start.step}" if start else "starting fresh")
    emit({"phase": "loading", "step": start.step if start else 0, "total_steps": None,
          "checkpoint": start.uri if start else None, "device": str(device)})

    base, tokenizer = hf_model.load_base(model_path, cache_root=cache_root)
    info = sft_data.read_prompt_info(model_path)
    data = sft_data.build_examples(rows_train, tokenizer, info, spec.training.max_seq_length,
                                   spec.training.max_tools_per_example, seed)
    if not data.examples:
        raise _config_error(f"none of the {len(rows_train)} training records fits max_seq_length="
                            f"{spec.training.max_seq_length} or renders (dropped: {dict(data.dropped)})")
    if data.dropped:
        log.warning("dropped %d of %d training records: %s", sum(data.dropped.values()), len(rows_train),
                    dict(data.dropped))
    plan = ts.Plan.make(len(data.examples), spec, device_type=device.type, seed=seed)

    base.to(device=device, dtype=dtype)
    lora = spec.lora
    model = hf_model.add_lora(base, rank=lora.adapter_dim, alpha=float(lora.alpha or 2 * lora.adapter_dim),
                              dropout=lora.adapter_dropout, seed=seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.training.learning_rate, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=plan.total_steps // 20,
                                                num_training_steps=plan.total_steps)
    step, loss_history = 0, []
    if start is not None:
        rng = ts.load_checkpoint(start, model=model, optimizer=optimizer, scheduler=scheduler, device=device)
        step, loss_history = start.step, list(start.state.get("loss_history", []))
        ts.restore_rng(rng)
    else:
        ts.seed_all(seed)
    latest = start
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def stop_reason() -> str | None:
        if _STOP.is_set():
            return "stop requested (signal/shutdown)"
        if should_stop is not None and should_stop():
            return "cancelled"
        return None

    def checkpoint(at: int, rng: dict[str, Any]) -> ckpts.Checkpoint:
        return ts.save_checkpoint(ckpt_root, at, model=model, optimizer=optimizer, scheduler=scheduler, rng=rng,
                                  plan=plan, fingerprint=fingerprint, loss_history=loss_history,
                                  keep=KEEP_CHECKPOINTS)

    def stopped(reason: str, rng: dict[str, Any]) -> TrainingStopped:
        nonlocal latest
        if step > 0 and (latest is None or latest.step != step):
            latest = checkpoint(step, rng)
        log.info("training %s stopped at step %d: %s", spec.name, step, reason)
        return TrainingStopped(step, latest.uri if latest else None, reason)

    model.train()
    every = spec.training.checkpoint_every_steps
    while step < plan.total_steps:
        reason = stop_reason()
        if reason:
            raise stopped(reason, ts.capture_rng())
        n = step + 1
        _epoch, indices = plan.batch_indices(n)
        examples = [data.examples[i] for i in indices]
        n_target = sum(e.num_target_tokens for e in examples)
        n_tokens = sum(len(e.input_ids) for e in examples)
        rng_at_start = ts.capture_rng()
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for first in range(0, len(examples), plan.micro_batch):
            reason = stop_reason()
            if reason:  # discard the partial step; the state is exactly "after step n-1"
                optimizer.zero_grad(set_to_none=True)
                ts.restore_rng(rng_at_start)
                raise stopped(reason, rng_at_start)
            batch = sft_data.collate(examples[first:first + plan.micro_batch], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, _ = hf_model.target_loss(model, batch)
            (loss / n_target).backward()
            loss_sum += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        step = n
        loss_history.append(round(loss_sum / n_target, 6))
        elapsed = time.perf_counter() - started
        if step % every == 0 or step == plan.total_steps:
            latest = checkpoint(step, ts.capture_rng())
        emit({"phase": "training", "step": step, "total_steps": plan.total_steps,
              "epoch": round(step / plan.steps_per_epoch, 4), "epochs_completed": step // plan.steps_per_epoch,
              "loss": loss_history[-1], "checkpoint": latest.uri if latest else None,
              "tokens_per_s": round(n_tokens / elapsed, 1) if elapsed > 0 else None,
              "step_seconds": round(elapsed, 3), "lr": scheduler.get_last_lr()[0]})
    reason = stop_reason()
    if reason:
        raise stopped(reason, ts.capture_rng())

    return _finish(spec, model, tokenizer, info, model_path, work_dir, plan, step, loss_history, latest,
                   fingerprint, data, rows_val, device, pad_id, emit)


def _finish(spec, model, tokenizer, info, model_path: Path, work_dir: Path, plan, step: int,
            loss_history: list[float], latest, fingerprint: str, data, rows_val, device, pad_id: int,
            emit: ProgressFn) -> CustomizationResult:
    adapter_dir = work_dir / "adapter"
    tmp = work_dir / "adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    shutil.rmtree(adapter_dir, ignore_errors=True)
    os.replace(tmp, adapter_dir)
    gguf_path = export_gguf_adapter(adapter_dir, model_path, work_dir / "adapter.gguf").resolve()
    val_loss = validation_loss(model, tokenizer, info, rows_val, spec.training.max_seq_length, device, pad_id,
                               spec.training.max_tools_per_example) \
        if rows_val else None
    result = CustomizationResult(
        customized_model=spec.output_model,
        adapter_uri=str(gguf_path),
        steps_completed=step,
        epochs_completed=step // plan.steps_per_epoch,
        final_loss=loss_history[-1] if loss_history else None,
        details={
            "peft_adapter_dir": str(adapter_dir.resolve()),
            "adapter_format": "gguf-lora",
            "checkpoint": latest.uri if latest else None,
            "loss_history": loss_history,
            "val_loss": val_loss,
            "num_examples": len(data.examples),
            "dropped_records": dict(data.dropped),
            "total_steps": plan.total_steps,
            "batch_size": plan.batch_size,
            "micro_batch": plan.micro_batch,
            "device": str(device),
        },
    )
    _write_json_atomic(work_dir / "result.json", {"fingerprint": fingerprint, "result": result.model_dump()})
    emit({"phase": "finished", "step": step, "total_steps": plan.total_steps, "loss": result.final_loss,
          "checkpoint": result.details["checkpoint"], "adapter_uri": result.adapter_uri, "val_loss": val_loss})
    return result


def validation_loss(model: Any, tokenizer: Any, info: Any, rows: list[dict], max_seq_length: int, device: Any,
                    pad_id: int, max_tools: int | None = None) -> float | None:
    """Mean target-token loss over up to :data:`VAL_MAX_EXAMPLES` validation records."""
    import torch

    from flywheel.platforms.local import hf_model  # imports torch (see _train)

    data = sft_data.build_examples(rows[:VAL_MAX_EXAMPLES], tokenizer, info, max_seq_length, max_tools)
    if not data.examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for example in data.examples:
            batch = {k: v.to(device) for k, v in sft_data.collate([example], pad_id).items()}
            loss, n = hf_model.target_loss(model, batch)
            total, count = total + float(loss), count + n
    model.train(was_training)
    return round(total / count, 6) if count else None
