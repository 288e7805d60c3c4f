"""Export a peft LoRA adapter as a GGUF LoRA adapter that llama.cpp loads next to its base GGUF
(``llama_cpp.Llama(model_path=base, lora_path=adapter)`` / the model server's ``--lora``).

Serving choice: a GGUF **LoRA adapter**, not a merged model. The base GGUF is Q4_K_M; merging
would need either re-quantising a dequantised model (no quantiser in the gguf package, and a
changed base) or serving a 1 GB float model. The adapter is a few MB, keeps the base file shared
between base/ICL/customized deployments and is applied by llama.cpp at inference time.

Format (the facts llama.cpp's ``convert_lora_to_gguf.py`` writes and ``llama_adapter_lora_init``
checks): ``general.architecture`` = the base's architecture, ``general.type`` = ``adapter``,
``adapter.type`` = ``lora``, ``adapter.lora.alpha`` (float32); one pair of tensors per adapted
weight named ``<gguf base tensor>.lora_a`` / ``.lora_b``, where the base tensor name comes from
gguf's tensor-name map for the architecture (``model.layers.0.self_attn.q_proj`` →
``blk.0.attn_q.weight``). peft's ``lora_A`` (rank × in) and ``lora_B`` (out × rank) are written
as-is (GGUF reverses the dimension order, giving ne = [in, rank] and [rank, out]). The adapted
projections (q/k/v/o, gate/up/down) are stored unchanged for Gemma/Qwen-style architectures; for
``llama`` the HF→GGUF converter reorders the rows of q/k for its rope layout, so ``lora_b`` of
q/k gets the same row permutation (the delta B·A then matches the permuted base weight).
Verified end to end for gemma3 (tests/integration/test_trainer.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flywheel.types import PlatformError

# Architectures whose HF→GGUF conversion reorders q/k rows (the adapter's B gets the same).
_PERMUTED_QK = {"llama"}


class LoRAExportError(PlatformError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, error_type="LoRAExportError")


def _base_info(base_gguf: Path) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(str(base_gguf))

    def field(name: str) -> Any:
        f = reader.fields.get(name)
        return None if f is None else f.contents()

    arch = field("general.architecture")
    if arch is None:
        raise LoRAExportError(f"{base_gguf} has no general.architecture")
    heads = field(f"{arch}.attention.head_count")
    return {"arch": arch, "blocks": int(field(f"{arch}.block_count") or 0),
            "names": {t.name for t in reader.tensors}, "heads": heads,
            "heads_kv": field(f"{arch}.attention.head_count_kv") or heads}


def check_base(base_gguf: Path) -> str:
    """Fail early (before training) if an adapter for this base cannot be exported; returns the arch."""
    import gguf

    arch = _base_info(Path(base_gguf))["arch"]
    if not any(v == arch for v in gguf.MODEL_ARCH_NAMES.values()):
        raise LoRAExportError(f"the gguf package does not know architecture {arch!r}")
    return arch


def _permute_rows(b: Any, n_head: int) -> Any:
    """The row order llama's HF→GGUF converter gives q/k weights (rope halves interleaved)."""
    return b.reshape(n_head, 2, b.shape[0] // n_head // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def _hf_to_gguf_name(hf_name: str, name_map: Any) -> str | None:
    return name_map.get_name(hf_name, try_suffixes=(".weight",))


def export_gguf_adapter(adapter_dir: Path, base_gguf: Path, out_path: Path) -> Path:
    """Write ``out_path`` (atomically) from the peft adapter in ``adapter_dir``."""
    import gguf
    import numpy as np
    from safetensors.torch import load_file

    adapter_dir, base_gguf, out_path = Path(adapter_dir), Path(base_gguf), Path(out_path)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    alpha = float(config["lora_alpha"])
    if config.get("use_rslora") or config.get("use_dora"):
        raise LoRAExportError("rsLoRA/DoRA adapters are not supported by the GGUF export")
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))

    base = _base_info(base_gguf)
    arch, n_blocks, base_names = base["arch"], base["blocks"], base["names"]
    arch_id = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_id is None:
        raise LoRAExportError(f"the gguf package does not know architecture {arch!r}")
    name_map = gguf.get_tensor_name_map(arch_id, n_blocks)

    pairs: dict[str, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        if ".lora_A." in name:
            part = "a"
        elif ".lora_B." in name:
            part = "b"
        else:
            raise LoRAExportError(f"unexpected tensor {name!r} in the adapter (only LoRA A/B are exported)")
        hf = name.replace("base_model.model.", "", 1).replace(f".lora_{part.upper()}.weight", "")
        target = _hf_to_gguf_name(hf, name_map)
        if target is None:
            raise LoRAExportError(f"no GGUF tensor name for {hf!r} in architecture {arch!r}")
        weight = target + ".weight"
        if weight not in base_names:
            raise LoRAExportError(f"adapter targets {weight}, which the base GGUF does not have")
        array = tensor.detach().float().cpu().numpy()
        if part == "b" and arch in _PERMUTED_QK and hf.endswith(("q_proj", "k_proj")):
            heads = base["heads"] if hf.endswith("q_proj") else base["heads_kv"]
            if not isinstance(heads, int):
                raise LoRAExportError(f"per-layer head counts are not supported for {arch!r}")
            array = _permute_rows(array, heads)
        pairs.setdefault(weight, {})[part] = array

    writer_tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(writer_tmp), arch=arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for weight in sorted(pairs):
        pair = pairs[weight]
        if set(pair) != {"a", "b"}:
            raise LoRAExportError(f"adapter has only lora_{'/'.join(pair)} for {weight}")
        a, b = pair["a"], pair["b"]
        if a.shape[0] != b.shape[1]:
            raise LoRAExportError(f"rank mismatch for {weight}: A {a.shape}, B {b.shape}")
        writer.add_tensor(weight + ".lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(weight + ".lora_b", np.ascontiguousarray(b, dtype=np.float32))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with writer_tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(writer_tmp, out_path)
    finally:
        writer_tmp.unlink(missing_ok=True)
    return out_path
