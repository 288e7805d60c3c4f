"""Training devices of this worker process: each running ``customize`` activity holds one.

The gpu queue's worker runs one activity per visible CUDA device (``workers.main.gpu_slots``); this
pool gives each of them its own ``cuda:N`` so two fine-tunes never share a GPU. Without CUDA the
single slot trains on ``cpu``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator


class DevicePool:
    def __init__(self, cuda_devices: int) -> None:
        self._free = [f"cuda:{i}" for i in range(cuda_devices)] or ["cpu"]
        self._shared_cpu = cuda_devices == 0

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[str]:
        if self._shared_cpu:
            yield "cpu"
            return
        if not self._free:  # more activities than slots: the worker's slot count prevents this
            raise RuntimeError("no free training device (gpu queue slots exceed visible GPUs)")
        device = self._free.pop(0)
        try:
            yield device
        finally:
            self._free.insert(0, device)


_pool: DevicePool | None = None


def cuda_device_count() -> int:
    try:
        import torch  # noqa: PLC0415 - heavy; only the gpu queue needs it
    except Exception:  # noqa: BLE001 - no torch: CPU
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def device_pool() -> DevicePool:
    global _pool
    if _pool is None:
        _pool = DevicePool(cuda_device_count())
    return _pool
