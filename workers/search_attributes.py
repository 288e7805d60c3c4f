"""Registering the custom search attributes (workflows/search_attributes.py) on a Temporal namespace.

Dev server: ``temporal server start-dev --search-attribute WorkloadId=Keyword --search-attribute
ClientId=Keyword --search-attribute FlywheelStage=Keyword --search-attribute JobType=Keyword``.
Real cluster: ``temporal operator search-attribute create --namespace NS --name WorkloadId --type Keyword``
(once per attribute), or let a worker call :func:`ensure_search_attributes` (needs operator rights).
"""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from workflows.search_attributes import SEARCH_ATTRIBUTE_NAMES

log = logging.getLogger("flywheel.workers")

SEARCH_ATTRIBUTES: dict[str, IndexedValueType.ValueType] = {
    name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in SEARCH_ATTRIBUTE_NAMES
}


async def ensure_search_attributes(client: Client, namespace: str | None = None) -> list[str]:
    """Create the missing search attributes; returns the names created. AlreadyExists is fine."""
    namespace = namespace or client.namespace
    existing = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = {k: v for k, v in SEARCH_ATTRIBUTES.items() if k not in known}
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    log.info("created search attributes", extra={"names": sorted(missing)})
    return sorted(missing)
