"""The one way to reach Temporal: workers, the starter API and the CLI all connect here, so they agree
on the namespace and on the data converter (pydantic models in, pydantic models out)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from flywheel.config import Settings


async def connect(settings: Settings) -> Client:
    """Connect to the configured Temporal namespace with the pydantic data converter."""
    return await Client.connect(settings.temporal.address, namespace=settings.temporal.namespace,
                                data_converter=pydantic_data_converter)
