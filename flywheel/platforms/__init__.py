"""The Platform registry: ``platform.kind`` → implementation, and :func:`make_platform`.

Implementations are imported when first built, not here: each pulls in its own optional dependencies
(the local trainer's torch/peft stack, NeMo's HTTP clients), and importing this package must stay cheap
for the workflow sandbox. Adding a platform = one entry in ``_REGISTRY`` (plus its ``kind`` in
``flywheel.config.PlatformConfig``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flywheel.types import WorkerShutdownProbe, never_shutting_down
from flywheel.vocabulary import TaskQueueRole

if TYPE_CHECKING:
    from flywheel.config import Settings
    from flywheel.platforms.base import Platform


@dataclass(frozen=True)
class PlatformEntry:
    target: str  # "module:Class"
    # Read by workflows (which must not import implementations): mirrors the class's customization_queue.
    customization_queue: TaskQueueRole = TaskQueueRole.cpu


_REGISTRY: dict[str, PlatformEntry] = {
    "local": PlatformEntry("flywheel.platforms.local.platform:LocalPlatform", TaskQueueRole.gpu),
    "nemo_v1": PlatformEntry("flywheel.platforms.nemo_v1.platform:NemoV1Platform"),
    "nemo_v2": PlatformEntry("flywheel.platforms.nemo_v2:NemoV2Platform"),
}


def registered_kinds() -> list[str]:
    return list(_REGISTRY)


def _entry(kind: str) -> PlatformEntry:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"platform.kind: unknown platform {kind!r} (known: {', '.join(_REGISTRY)})") from None


def platform_class(kind: str) -> type[Platform]:
    module, _, name = _entry(kind).target.partition(":")
    return getattr(importlib.import_module(module), name)


def customization_queue(settings: Settings) -> TaskQueueRole:
    """Which worker pool runs the configured platform's customize() (workflow-safe: imports nothing)."""
    return _entry(settings.platform.kind).customization_queue


def make_platform(settings: Settings, *, is_worker_shutdown: WorkerShutdownProbe = never_shutting_down) -> Platform:
    """The configured Platform implementation. ``is_worker_shutdown`` lets a platform tell a worker
    shutdown (leave remote jobs running for the retry) from a real cancellation."""
    return platform_class(settings.platform.kind)(settings, is_worker_shutdown=is_worker_shutdown)
