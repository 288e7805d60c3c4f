"""The one way to reach Temporal: workers, the starter API and the CLI all connect here, so they agree
on the namespace and on the data converter (pydantic models in, pydantic models out, every payload
AES-GCM encrypted when ``security.payload_encryption`` is configured: see workers/payload_codec.py)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from flywheel.config import Settings
from workers.payload_codec import data_converter_for


async def connect(settings: Settings) -> Client:
    """Connect to the configured Temporal namespace with the pydantic data converter (and the payload codec
    when configured; a missing key's env var raises PayloadKeyError naming it)."""
    return await Client.connect(settings.temporal.address, namespace=settings.temporal.namespace,
                                data_converter=data_converter_for(settings, pydantic_data_converter))
