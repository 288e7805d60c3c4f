"""Contrastive fine-tuning of a sentence-transformers embedding model, resumable and cancellable.

The loss is sentence-transformers' ``MultipleNegativesRankingLoss``: for every triplet
``{query, pos_doc, neg_doc[]}`` of a batch, the positive must outscore every other passage of the
batch — the other triplets' positives and negatives (in-batch negatives) and its own mined hard
negatives. ``finetuning_type`` ``all_weights`` trains the whole model; ``lora`` trains peft LoRA
adapters on the attention and feed-forward projections and merges them into the saved model, so
the result is a plain sentence-transformers directory either way.

Durability is the LoRA trainer's (:mod:`flywheel.platforms.local.trainer`): every
``checkpoint_every_steps`` steps, at the last step and when asked to stop (``should_stop()``,
:func:`~flywheel.platforms.local.trainer.request_stop`, SIGTERM on the main thread) the trainable
weights, optimizer, scheduler, RNG states and data position are written atomically
(:mod:`flywheel.platforms.local.checkpoints`, newest 2 kept). A later call with the same inputs
resumes after the newest complete checkpoint and reproduces the uninterrupted run; the data order
is a pure function of (seed, epoch). A stop is honoured between steps. A finished run writes
``work_dir/result.json`` and ``work_dir/model/``; calling again returns the result without training.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from flywheel.platforms.local import checkpoints as ckpts
from flywheel.retrieval.config import ContrastiveTrainingConfig

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2
MAX_GRAD_NORM = 1.0
LORA_TARGETS = ["query", "key", "value", "dense"]  # BERT-family projection names (MiniLM, E5, BGE)

Progress = Callable[[dict[str, Any]], None]


class EmbeddingTrainingError(Exception):
    """A permanent problem with the inputs (retrying cannot help)."""


class EmbeddingTrainingBusy(Exception):
    """Another trainer holds the work dir (an earlier attempt still running); retry later."""


class EmbeddingTrainingResult(BaseModel):
    model_dir: str
    base_model: str
    finetuning_type: str
    steps_completed: int
    epochs_completed: int
    final_loss: float | None = None
    val_loss: float | None = None
    num_triplets: int
    train_seconds: float | None = None
    fingerprint: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


def _stop_event():
    # One stop flag per process, shared with the LoRA trainer: a worker's shutdown hook stops both.
    from flywheel.platforms.local.trainer import _STOP

    return _STOP


def triplets_digest(triplets: Sequence[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for t in triplets:
        digest.update(json.dumps([t["query"], t["pos_doc"], t["neg_doc"]], ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def fingerprint(config: ContrastiveTrainingConfig, base_model: Path, triplets: Sequence[dict[str, Any]]) -> str:
    """What a checkpoint or a finished result must match to be reused (checkpoint cadence may change)."""
    weights = sorted((p.name, p.stat().st_size) for p in Path(base_model).rglob("*") if p.is_file())
    payload = {"config": config.model_dump(exclude={"checkpoint_every_steps"}),
               "base": [Path(base_model).name, weights], "triplets": triplets_digest(triplets), "format": 1}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


@contextmanager
def _exclusive(work_dir: Path) -> Iterator[None]:
    with open(work_dir / ".train.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EmbeddingTrainingBusy(f"another trainer is running in {work_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_result(work_dir: Path, expected: str) -> EmbeddingTrainingResult | None:
    try:
        saved = EmbeddingTrainingResult.model_validate_json((work_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if saved.fingerprint != expected or not (Path(saved.model_dir) / "config.json").is_file():
        return None
    return saved


def train_embedding_model(triplets: Sequence[dict[str, Any]], *, base_model: str | Path, work_dir: str | Path,
                          config: ContrastiveTrainingConfig, val_triplets: Sequence[dict[str, Any]] = (),
                          progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                          resume: bool = True, device: str | None = None) -> EmbeddingTrainingResult:
    """Fine-tune ``base_model`` (a sentence-transformers directory) on ``triplets``; see the module docstring.

    Raises :class:`~flywheel.platforms.local.trainer.TrainingStopped` when stopped (checkpoint saved),
    :class:`EmbeddingTrainingError` for bad inputs, :class:`EmbeddingTrainingBusy` when another
    trainer holds ``work_dir``.
    """
    from flywheel.platforms.local.trainer import _sigterm_requests_stop

    base_model, work_dir = Path(base_model), Path(work_dir)
    if not (base_model / "config.json").is_file() and not (base_model / "modules.json").is_file():
        raise EmbeddingTrainingError(f"base embedding model directory not found or not a model: {base_model}")
    if not triplets:
        raise EmbeddingTrainingError("no training triplets")
    widths = {len(t["neg_doc"]) for t in triplets}
    if len(widths) != 1 or 0 in widths:
        raise EmbeddingTrainingError(f"every triplet needs the same number (>= 1) of negatives, got {sorted(widths)}")
    work_dir.mkdir(parents=True, exist_ok=True)
    _stop_event().clear()
    with _exclusive(work_dir), _sigterm_requests_stop():
        return _train(list(triplets), list(val_triplets), base_model, work_dir, config, progress, should_stop,
                      resume, device)


def _train(  # noqa: C901 - the training loop, kept in one piece like the LoRA trainer's
        triplets, val_triplets, base_model: Path, work_dir: Path, config: ContrastiveTrainingConfig,
        progress: Progress | None, should_stop: Callable[[], bool] | None, resume: bool,
        device: str | None) -> EmbeddingTrainingResult:
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import get_linear_schedule_with_warmup

    from flywheel.platforms.local import train_state as ts
    from flywheel.platforms.local.trainer import TrainingStopped
    from flywheel.retrieval.candidates import load_sentence_transformer

    emit = progress or (lambda _info: None)
    expected = fingerprint(config, base_model, triplets)
    finished = _read_result(work_dir, expected) if resume else None
    if finished is not None:
        emit({"phase": "finished", "step": finished.steps_completed, "total_steps": finished.steps_completed,
              "loss": finished.final_loss, "checkpoint": None})
        return finished

    ckpt_root = work_dir / "checkpoints"
    if not resume and ckpt_root.exists():
        shutil.rmtree(ckpt_root)
    start = ckpts.find_newest(ckpt_root) if resume else None
    if start is not None and start.state.get("fingerprint") != expected:
        stale = work_dir / f"checkpoints.stale-{int(time.time())}"
        log.warning("checkpoints in %s were made with other inputs; moved to %s", ckpt_root, stale)
        ckpt_root.rename(stale)
        start = None

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    emit({"phase": "loading", "step": start.step if start else 0, "total_steps": None,
          "checkpoint": start.uri if start else None, "device": device})
    model = load_sentence_transformer(base_model, device, cached=False)
    model.max_seq_length = config.max_seq_length
    if config.finetuning_type == "lora":
        from peft import LoraConfig, get_peft_model

        module = model[0]
        torch.manual_seed(config.seed)  # LoRA's A matrices are random: make them reproducible
        module.model = get_peft_model(module.model, LoraConfig(
            r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=LORA_TARGETS))
    loss_fn = MultipleNegativesRankingLoss(model, scale=config.scale)

    batch = min(config.batch_size, len(triplets))
    per_epoch = math.ceil(len(triplets) / batch)
    total = per_epoch * config.epochs if config.max_steps is None else min(per_epoch * config.epochs, config.max_steps)
    plan = ts.Plan(num_examples=len(triplets), batch_size=batch, micro_batch=batch, epochs=config.epochs,
                   steps_per_epoch=per_epoch, total_steps=total, shuffle_seed=config.seed)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(total * config.warmup_ratio), total)

    def save(at: int, rng: dict[str, Any], history: list[float]) -> ckpts.Checkpoint:
        from safetensors.torch import save_file

        weights = {n: p.detach().to("cpu", copy=True).contiguous() for n, p in named}
        epoch, index = plan.position(at)
        state = {"epoch": epoch, "index_in_epoch": index, "shuffle_seed": plan.shuffle_seed, "total_steps": total,
                 "steps_per_epoch": per_epoch, "loss_history": list(history), "fingerprint": expected,
                 "saved_at": time.time()}
        writers = {"trainable.safetensors": lambda p: save_file(weights, str(p)),
                   "optimizer.pt": lambda p: torch.save(optimizer.state_dict(), p),
                   "scheduler.pt": lambda p: torch.save(scheduler.state_dict(), p),
                   "rng.pt": lambda p: torch.save(rng, p)}
        return ckpts.save(ckpt_root, at, state, writers, keep=KEEP_CHECKPOINTS)

    step, history = 0, []
    if start is not None:
        from safetensors.torch import load_file

        weights = load_file(str(start.path / "trainable.safetensors"), device=device)
        by_name = dict(named)
        missing = sorted(set(by_name) - set(weights))
        if missing:
            raise ckpts.CheckpointError(f"{start.path}: trainable weights missing {missing[:3]}")
        with torch.no_grad():
            for name, tensor in weights.items():
                by_name[name].copy_(tensor)
        optimizer.load_state_dict(torch.load(start.path / "optimizer.pt", map_location=device, weights_only=True))
        scheduler.load_state_dict(torch.load(start.path / "scheduler.pt", weights_only=True))
        ts.restore_rng(torch.load(start.path / "rng.pt", weights_only=False))
        step, history = start.step, list(start.state.get("loss_history", []))
        log.info("resuming embedding training from step %d", step)
    else:
        ts.seed_all(config.seed)
    latest = start
    stop = _stop_event()

    def stop_reason() -> str | None:
        if stop.is_set():
            return "stop requested (signal/shutdown)"
        if should_stop is not None and should_stop():
            return "cancelled"
        return None

    def features(texts: list[str]) -> dict[str, Any]:
        out = model.preprocess(texts)
        return {k: v.to(device) if hasattr(v, "to") else v for k, v in out.items()}

    def batch_loss(items: list[dict[str, Any]]) -> Any:
        columns = [[t["query"] for t in items], [t["pos_doc"] for t in items]]
        columns += [[t["neg_doc"][j] for t in items] for j in range(len(items[0]["neg_doc"]))]
        return loss_fn([features(c) for c in columns], None)

    started_at = time.perf_counter()
    model.train()
    while step < total:
        reason = stop_reason()
        if reason:
            if step > 0 and (latest is None or latest.step != step):
                latest = save(step, ts.capture_rng(), history)
            raise TrainingStopped(step, latest.uri if latest else None, reason)
        n = step + 1
        _epoch, indices = plan.batch_indices(n)
        items = [triplets[i] for i in indices]
        tick = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = batch_loss(items)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        step = n
        history.append(round(float(loss.detach()), 6))
        if step % config.checkpoint_every_steps == 0 or step == total:
            latest = save(step, ts.capture_rng(), history)
        emit({"phase": "training", "step": step, "total_steps": total, "epoch": round(step / per_epoch, 4),
              "epochs_completed": step // per_epoch, "loss": history[-1],
              "checkpoint": latest.uri if latest else None, "step_seconds": round(time.perf_counter() - tick, 3),
              "lr": scheduler.get_last_lr()[0]})
    train_seconds = round(time.perf_counter() - started_at, 2)

    model.eval()
    val_loss = None
    if val_triplets:
        with torch.no_grad():
            losses = [float(batch_loss(val_triplets[i:i + batch])) for i in range(0, len(val_triplets), batch)
                      if len(val_triplets[i:i + batch]) >= 2]
        val_loss = round(sum(losses) / len(losses), 6) if losses else None
    if config.finetuning_type == "lora":
        model[0].model = model[0].model.merge_and_unload()
    model_dir = work_dir / "model"
    tmp = work_dir / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    shutil.rmtree(model_dir, ignore_errors=True)
    os.replace(tmp, model_dir)
    result = EmbeddingTrainingResult(
        model_dir=str(model_dir.resolve()), base_model=str(base_model), finetuning_type=config.finetuning_type,
        steps_completed=step, epochs_completed=step // per_epoch, final_loss=history[-1] if history else None,
        val_loss=val_loss, num_triplets=len(triplets), train_seconds=train_seconds, fingerprint=expected,
        details={"loss_history": history, "device": device, "batch_size": batch,
                 "resumed_from_step": start.step if start else None})
    _write_json_atomic(work_dir / "result.json", json.loads(result.model_dump_json()))
    emit({"phase": "finished", "step": step, "total_steps": total, "loss": result.final_loss,
          "checkpoint": latest.uri if latest else None})
    return result
