"""Deterministic training plan and resumable training state for the LoRA trainer.

The data order is a pure function of (shuffle seed, epoch): step ``n`` (1-based) always trains on
the same examples, so a checkpoint's data position is just (epoch, examples consumed in that
epoch, seed) and a resumed run continues with exactly the batch an uninterrupted run would have
used next. Together with the restored adapter, optimizer, scheduler and RNG states (dropout), a
resumed run reproduces the uninterrupted run's weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flywheel.platforms.local import checkpoints as ckpts
from flywheel.types import CustomizationSpec


@dataclass(frozen=True)
class Plan:
    num_examples: int
    batch_size: int
    micro_batch: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    shuffle_seed: int

    @classmethod
    def make(cls, num_examples: int, spec: CustomizationSpec, *, device_type: str, seed: int) -> Plan:
        training = spec.training
        batch = max(1, min(training.batch_size, num_examples))
        if training.gradient_accumulation_steps > 1:
            micro = math.ceil(batch / training.gradient_accumulation_steps)
        else:  # CPU: no padding waste, lowest memory; GPU: fill the device
            micro = 1 if device_type == "cpu" else min(batch, 8)
        per_epoch = math.ceil(num_examples / batch)
        total = per_epoch * training.epochs
        if training.max_steps is not None:
            total = min(total, training.max_steps)
        return cls(num_examples, batch, micro, training.epochs, per_epoch, total, seed)

    @property
    def accumulation(self) -> int:
        return math.ceil(self.batch_size / self.micro_batch)

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.shuffle_seed, epoch]).permutation(self.num_examples)

    def position(self, completed_steps: int) -> tuple[int, int]:
        """(epoch, examples consumed in it) after ``completed_steps`` steps."""
        epoch, index = divmod(completed_steps, self.steps_per_epoch)
        return epoch, min(index * self.batch_size, self.num_examples)

    def batch_indices(self, step: int) -> tuple[int, list[int]]:
        """(epoch, example indices) for 1-based optimizer step ``step``."""
        epoch, index = divmod(step - 1, self.steps_per_epoch)
        start = index * self.batch_size
        return epoch, [int(i) for i in self.order(epoch)[start:start + self.batch_size]]


def rows_digest(rows: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def run_fingerprint(spec: CustomizationSpec, model_path: Path, rows_train: list[dict[str, Any]], seed: int) -> str:
    """What a checkpoint or a finished result must match to be reused: hyperparameters, base
    weights, training rows, seed. (Checkpoint frequency and device are free to change.)"""
    stat = Path(model_path).stat()
    payload = {
        "training": spec.training.model_dump(exclude={"checkpoint_every_steps"}),
        "lora": spec.lora.model_dump(),
        "model": [Path(model_path).name, stat.st_size],
        "rows": rows_digest(rows_train),
        "seed": seed,
        "format": 1,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(root: Path, step: int, *, model: Any, optimizer: Any, scheduler: Any, rng: dict[str, Any],
                    plan: Plan, fingerprint: str, loss_history: list[float], keep: int) -> ckpts.Checkpoint:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    adapter = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in get_peft_model_state_dict(model).items()}
    epoch, index = plan.position(step)
    state = {
        "epoch": epoch,
        "index_in_epoch": index,
        "shuffle_seed": plan.shuffle_seed,
        "total_steps": plan.total_steps,
        "steps_per_epoch": plan.steps_per_epoch,
        "loss_history": list(loss_history),
        "fingerprint": fingerprint,
        "saved_at": time.time(),
    }
    writers = {
        "adapter.safetensors": lambda p: save_file(adapter, str(p)),
        "optimizer.pt": lambda p: torch.save(optimizer.state_dict(), p),
        "scheduler.pt": lambda p: torch.save(scheduler.state_dict(), p),
        "rng.pt": lambda p: torch.save(rng, p),
    }
    return ckpts.save(root, step, state, writers, keep=keep)


def load_checkpoint(ckpt: ckpts.Checkpoint, *, model: Any, optimizer: Any, scheduler: Any,
                    device: torch.device) -> dict[str, Any]:
    """Restore adapter/optimizer/scheduler in place; returns the RNG state to restore last."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = load_file(str(ckpt.path / "adapter.safetensors"), device=str(device))
    result = set_peft_model_state_dict(model, adapter)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ckpts.CheckpointError(f"{ckpt.path}: adapter has unexpected keys {unexpected[:3]}")
    optimizer.load_state_dict(torch.load(ckpt.path / "optimizer.pt", map_location=device, weights_only=True))
    scheduler.load_state_dict(torch.load(ckpt.path / "scheduler.pt", weights_only=True))
    # Our own file (numpy/python RNG tuples are not plain tensors).
    return torch.load(ckpt.path / "rng.pt", weights_only=False)
