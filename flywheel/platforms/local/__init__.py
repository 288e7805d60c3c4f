"""The embedded local platform: datasets on disk, llama.cpp model servers, in-process evaluation,
peft LoRA training."""

from flywheel.platforms.local.platform import LocalPlatform

__all__ = ["LocalPlatform"]
