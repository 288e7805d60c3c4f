"""How the Elasticsearch log store talks to its server: one client, two dialects (``flavor``).

Both flavors use the official ``AsyncElasticsearch`` client's connection layer (node pool, TLS, timeouts,
retries). They differ where Elasticsearch and OpenSearch differ on the wire:

* ``elasticsearch``: the client's typed API. It sends ``application/vnd.elasticsearch+json;
  compatible-with=9`` content types, checks the ``X-Elastic-Product`` header, and opens a point in
  time with ``POST /{index}/_pit`` (closed with ``DELETE /_pit``).
* ``opensearch``: OpenSearch answers those content types with HTTP 406, sends no product header and
  has its point in time at ``POST /{index}/_search/point_in_time`` (``pit_id`` in the answer, closed
  with ``DELETE /_search/point_in_time``). Requests go through the same client's transport
  (``client.transport``) with plain ``application/json``; errors are raised as the client's own
  ``ApiError`` types, so callers handle one set of exceptions.
"""

from __future__ import annotations

import base64
import os
from typing import Any, Protocol
from urllib.parse import quote

from elasticsearch import AsyncElasticsearch
from elasticsearch.exceptions import HTTP_EXCEPTIONS, ApiError
from elasticsearch.serializer import OrjsonSerializer

from flywheel.config import ConfigError, ElasticsearchConfig

SEQ_FIELD = "flywheel_ingest_seq"  # added at ingest; orders records with the same timestamp (latest first)


def index_template(index: str) -> dict[str, Any]:
    """The composable index template for the log index: only the fields we filter and sort on are indexed.

    ``request``/``response`` are stored but not indexed (``enabled: false``): tool schemas differ per
    workload and would otherwise collide in one dynamic mapping. ``timestamp`` accepts epoch seconds
    or ISO 8601; an unparsable one is kept (``ignore_malformed``) and, like the SQLite store, such a
    record is counted but never extracted.
    """
    return {
        "index_patterns": [index],
        "priority": 200,
        "template": {
            "mappings": {
                "dynamic": False,
                "properties": {
                    "workload_id": {"type": "keyword"},
                    "client_id": {"type": "keyword"},
                    "timestamp": {"type": "date", "format": "epoch_second||strict_date_optional_time",
                                  "ignore_malformed": True},
                    SEQ_FIELD: {"type": "long"},
                    "request": {"type": "object", "enabled": False},
                    "response": {"type": "object", "enabled": False},
                },
            },
        },
    }


def _secret(environ: Any, field: str, name: str) -> str:
    value = environ.get(name)
    if not value:
        raise ConfigError(f"logstore.elasticsearch.{field}: environment variable {name} is not set")
    return value


def credentials(config: ElasticsearchConfig, environ: Any = None) -> dict[str, Any]:
    """``api_key`` or ``basic_auth`` for the client, read from the env vars the config names."""
    env = os.environ if environ is None else environ
    if config.api_key_env:
        return {"api_key": _secret(env, "api_key_env", config.api_key_env)}
    if config.username_env and config.password_env:
        return {"basic_auth": (_secret(env, "username_env", config.username_env),
                               _secret(env, "password_env", config.password_env))}
    return {}


def build_client(config: ElasticsearchConfig, environ: Any = None) -> AsyncElasticsearch:
    kwargs: dict[str, Any] = {
        "hosts": list(config.hosts),
        # orjson parses the (large) search pages several times faster than the stdlib default.
        "serializers": {mimetype: OrjsonSerializer() for mimetype in (
            "application/json", "application/vnd.elasticsearch+json")},
        "request_timeout": config.request_timeout_s,
        "max_retries": config.max_retries,
        "retry_on_timeout": config.max_retries > 0,
        **credentials(config, environ),
    }
    if any(h.startswith("https://") for h in config.hosts):
        kwargs["verify_certs"] = config.verify_certs
        if config.ca_certs:
            kwargs["ca_certs"] = config.ca_certs
    return AsyncElasticsearch(**kwargs)


class Wire(Protocol):
    async def put_index_template(self, name: str, body: dict[str, Any]) -> None: ...
    async def bulk(self, operations: list[dict[str, Any]], *, refresh: bool) -> dict[str, Any]: ...
    async def open_pit(self, index: str, keep_alive: str) -> str: ...
    async def search(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def close_pit(self, pit_id: str) -> None: ...
    async def count(self, index: str, query: dict[str, Any]) -> int: ...
    async def mapping(self, index: str) -> dict[str, Any]: ...


class ElasticsearchWire:
    """Elasticsearch 8/9 through the typed API."""

    def __init__(self, client: AsyncElasticsearch) -> None:
        self.client = client

    async def put_index_template(self, name: str, body: dict[str, Any]) -> None:
        await self.client.indices.put_index_template(name=name, **body)

    async def bulk(self, operations: list[dict[str, Any]], *, refresh: bool) -> dict[str, Any]:
        return (await self.client.bulk(operations=operations, refresh="wait_for" if refresh else False)).body

    async def open_pit(self, index: str, keep_alive: str) -> str:
        return (await self.client.open_point_in_time(index=index, keep_alive=keep_alive)).body["id"]

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        return (await self.client.search(**body)).body

    async def close_pit(self, pit_id: str) -> None:
        await self.client.close_point_in_time(id=pit_id)

    async def count(self, index: str, query: dict[str, Any]) -> int:
        return int((await self.client.count(index=index, query=query)).body["count"])

    async def mapping(self, index: str) -> dict[str, Any]:
        return (await self.client.indices.get_mapping(index=index, ignore_unavailable=True)).body


class OpenSearchWire:
    """OpenSearch 2.x through the client's transport, plain JSON, OpenSearch's endpoints."""

    def __init__(self, client: AsyncElasticsearch, config: ElasticsearchConfig, environ: Any = None) -> None:
        self.client = client
        self.retry = {"request_timeout": config.request_timeout_s, "max_retries": config.max_retries,
                      "retry_on_timeout": config.max_retries > 0}
        self.headers = {"accept": "application/json"}
        creds = credentials(config, environ)
        if "api_key" in creds:
            self.headers["authorization"] = f"ApiKey {creds['api_key']}"
        elif "basic_auth" in creds:
            user, password = creds["basic_auth"]
            self.headers["authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def _request(self, method: str, path: str, body: Any = None, *, ndjson: bool = False) -> Any:
        headers = dict(self.headers)
        if body is not None:
            headers["content-type"] = "application/x-ndjson" if ndjson else "application/json"
        meta, data = await self.client.transport.perform_request(method, path, headers=headers, body=body,
                                                               **self.retry)
        if not 200 <= meta.status < 300:
            error = data.get("error", data) if isinstance(data, dict) else data
            message = error.get("type", str(error)) if isinstance(error, dict) else str(error)
            raise HTTP_EXCEPTIONS.get(meta.status, ApiError)(message=message, meta=meta, body=data)
        return data

    async def put_index_template(self, name: str, body: dict[str, Any]) -> None:
        await self._request("PUT", f"/_index_template/{quote(name)}", body)

    async def bulk(self, operations: list[dict[str, Any]], *, refresh: bool) -> dict[str, Any]:
        return await self._request("POST", "/_bulk" + ("?refresh=wait_for" if refresh else ""), operations,
                                   ndjson=True)

    async def open_pit(self, index: str, keep_alive: str) -> str:
        data = await self._request("POST", f"/{quote(index)}/_search/point_in_time?keep_alive={keep_alive}")
        return data["pit_id"]

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", "/_search", body)

    async def close_pit(self, pit_id: str) -> None:
        await self._request("DELETE", "/_search/point_in_time", {"pit_id": [pit_id]})

    async def count(self, index: str, query: dict[str, Any]) -> int:
        return int((await self._request("POST", f"/{quote(index)}/_count", {"query": query}))["count"])

    async def mapping(self, index: str) -> dict[str, Any]:
        return await self._request("GET", f"/{quote(index)}/_mapping?ignore_unavailable=true")


def build_wire(config: ElasticsearchConfig, client: AsyncElasticsearch, environ: Any = None) -> Wire:
    if config.flavor == "opensearch":
        return OpenSearchWire(client, config, environ)
    return ElasticsearchWire(client)
