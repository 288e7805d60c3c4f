"""The base model for LoRA training, loaded from the same GGUF the candidate is served from.

transformers + gguf dequantize the GGUF (``from_pretrained(dir, gguf_file=...)``). That is slow
(1-2 min for Gemma-270M on a busy 2-core machine, mostly tokenizer conversion and dequantizing),
so the dequantized weights and tokenizer are cached once on disk next to the GGUF
(``<gguf dir>/.hf-dequantized/<stem>-<size>-<mtime>/``, written to a temp dir and renamed) and a
resumed attempt loads them in seconds. The cache holds exactly what transformers produced from
the GGUF, so training always sees the served weights. A per-process copy is also kept in memory
(one model) so several trainings in one worker/test process share one load.
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from flywheel.types import PlatformError

log = logging.getLogger(__name__)

LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_MEMORY: dict[tuple[str, str], tuple[Any, Any]] = {}
_MEMORY_LOCK = threading.Lock()


def resolve_device(requested: str | None) -> torch.device:
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise PlatformError(f"device {requested!r} requested but CUDA is not available on this worker",
                                retryable=False, error_type="TrainingConfigError")
        return device
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def dtype_for(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def cache_dir(model_path: Path, cache_root: Path | None = None) -> Path:
    """Where this host keeps the dequantised weights of ``model_path`` (platforms.local.weights_cache shares it)."""
    stat = model_path.stat()
    root = cache_root or (model_path.parent / ".hf-dequantized")
    return root / f"{model_path.stem}-{stat.st_size}-{stat.st_mtime_ns}"


def _load_from_gguf(model_path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": model_path.name}
    tokenizer = AutoTokenizer.from_pretrained(str(model_path.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(model_path.parent), dtype=torch.float32, **kwargs)
    return model, tokenizer


def _write_cache(model: Any, tokenizer: Any, target: Path) -> None:
    from safetensors.torch import save_model

    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_model(model, str(tmp / "model.safetensors"))  # handles tied embeddings
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the cached weights are plain float32
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        tokenizer.save_pretrained(str(tmp))
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_base(model_path: Path, *, cache_root: Path | None = None, disk_cache: bool = True) -> tuple[Any, Any]:
    """(float32 CPU model, tokenizer) for ``model_path``; the model is a private copy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_path = Path(model_path).resolve()
    cache = cache_dir(model_path, cache_root)
    key = (str(model_path), str(cache))
    with _MEMORY_LOCK:
        if key in _MEMORY:
            model, tokenizer = _MEMORY[key]
            return copy.deepcopy(model), tokenizer
        if disk_cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with open(cache.parent / f".{cache.name}.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not (cache / "model.safetensors").is_file():
                    log.info("dequantizing %s (first use; cached in %s)", model_path, cache)
                    model, tokenizer = _load_from_gguf(model_path)
                    try:
                        _write_cache(model, tokenizer, cache)
                    except OSError as exc:  # a full disk must not stop training
                        log.warning("could not write the dequantized cache %s: %s", cache, exc)
                else:
                    tokenizer = AutoTokenizer.from_pretrained(str(cache))
                    model = AutoModelForCausalLM.from_pretrained(str(cache), dtype=torch.float32)
        else:
            model, tokenizer = _load_from_gguf(model_path)
        _MEMORY.clear()  # one model per process
        _MEMORY[key] = (model, tokenizer)
        return copy.deepcopy(model), tokenizer


def add_lora(model: Any, *, rank: int, alpha: float, dropout: float, seed: int) -> Any:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # LoRA A init
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGET_MODULES,
                        bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def target_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(sum of token cross-entropies over the target tokens, number of target tokens).

    Runs the decoder, then the LM head only on positions whose next token is a target: with a
    262k vocabulary the head is most of the compute, and prompt positions carry no loss.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    out = base.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    hidden = out.last_hidden_state[:, :-1]
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    logits = base.lm_head(hidden[keep]).float()
    softcap = getattr(base.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    targets = labels[keep]
    return F.cross_entropy(logits, targets, reduction="sum"), int(targets.numel())
