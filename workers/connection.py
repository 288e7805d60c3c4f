"""The one way to reach Temporal: workers, the starter API and the CLI all connect here, so they agree
on the namespace and on the data converter (pydantic models in, pydantic models out, every payload
AES-GCM encrypted when ``security.payload_encryption`` is configured: see workers/payload_codec.py)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from flywheel.config import Settings
from workers.payload_codec import data_converter_for
from workers.temporal_auth import connect_kwargs


async def connect(settings: Settings) -> Client:
    """Connect to the configured Temporal namespace with the pydantic data converter (and the payload codec
    when configured; a missing key's env var raises PayloadKeyError naming it), over TLS and with an API key
    when ``temporal.tls`` / ``temporal.api_key_env`` say so."""
    return await Client.connect(**connect_kwargs(settings.temporal),
                                data_converter=data_converter_for(settings, pydantic_data_converter))
