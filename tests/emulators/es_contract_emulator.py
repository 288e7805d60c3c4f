"""CONTRACT EMULATOR for the Elasticsearch 9 dialect of the log store (tests only).

No Elasticsearch server installs on these machines; osmem-server (OpenSearch-compatible) does. This
emulator stands in front of osmem and speaks what only real Elasticsearch speaks, so the store's
``flavor: elasticsearch`` path runs end to end over HTTP with real search semantics underneath:

* it demands the ES 9 client's content negotiation (``Accept``/``Content-Type``
  ``application/vnd.elasticsearch+json; compatible-with=9``, ``+x-ndjson`` for bulk) and answers 406
  otherwise, and it sends ``X-Elastic-Product: Elasticsearch`` (the client refuses servers without it);
* it serves Elasticsearch's point-in-time API (``POST /{index}/_pit`` -> ``{"id"}``, ``DELETE /_pit``
  with ``{"id"}``, ``pit_id`` in search answers) by translating to OpenSearch's
  ``/_search/point_in_time`` endpoints;
* it validates requests and answers with the ``elasticsearch`` client's own definitions: body keys
  against the parameters of the client's API methods, queries by parsing them with
  ``elasticsearch.dsl.Q`` (and requiring the same dict back), sort options against ``dsl.types.FieldSort``
  (including its ``Literal`` values), hits against ``dsl.types.Hit`` and shard headers against
  ``dsl.types.ShardStatistics``. A violation answers 400 and is recorded in ``violations``.

What it cannot show: real Elasticsearch's own behaviour beyond this contract (scoring, cluster
routing, PIT expiry timing). Those are only as right as osmem's OpenSearch behaviour underneath.
"""

from __future__ import annotations

import inspect
import json
import typing
from typing import Any

import httpx
from elasticsearch import AsyncElasticsearch
from elasticsearch._async.client.indices import IndicesClient
from elasticsearch.dsl import Q
from elasticsearch.dsl import types as es_types
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

COMPAT_JSON = "application/vnd.elasticsearch+json; compatible-with=9"
COMPAT_NDJSON = "application/vnd.elasticsearch+x-ndjson; compatible-with=9"


class ContractViolation(Exception):
    pass


def _api_params(method: Any) -> set[str]:
    """Every parameter the client's API method accepts (body fields among them)."""
    return {("from" if name == "from_" else name) for name in inspect.signature(method).parameters}


def _literals(annotation: Any) -> set[Any] | None:
    """The allowed values when a dsl type annotation is (a Union with) a Literal; else None."""
    found: set[Any] = set()
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Literal:
            found |= set(typing.get_args(arg))
    if typing.get_origin(annotation) is typing.Literal:
        found |= set(typing.get_args(annotation))
    return found or None


def _check_keys(what: str, given: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(given) - allowed
    if unknown:
        raise ContractViolation(f"{what}: unknown keys {sorted(unknown)}")


def check_search_body(body: dict[str, Any]) -> None:
    _check_keys("search body", body, _api_params(AsyncElasticsearch.search))
    pit = body.get("pit")
    if not isinstance(pit, dict) or set(pit) - {"id", "keep_alive"} or "id" not in pit:
        raise ContractViolation(f"search body: pit must be {{id, keep_alive}}, got {pit!r}")
    if "query" in body:
        try:
            parsed = Q(body["query"]).to_dict()
        except Exception as exc:  # the dsl raises its own types for unknown queries
            raise ContractViolation(f"search body: query: {exc}") from exc
        if parsed != body["query"]:
            raise ContractViolation("search body: query does not round-trip through elasticsearch.dsl.Q")
    field_sort = es_types.FieldSort.__annotations__
    for entry in body.get("sort", []):
        for field, options in (entry.items() if isinstance(entry, dict) else [(entry, {})]):
            if isinstance(options, str):
                options = {"order": options}
            _check_keys(f"sort on {field}", options, set(field_sort))
            for key, value in options.items():
                allowed = _literals(field_sort[key])
                if allowed is not None and value not in allowed and key != "missing":
                    raise ContractViolation(f"sort on {field}: {key}={value!r} not one of {sorted(allowed)}")


def check_hits(answer: dict[str, Any]) -> None:
    _check_keys("_shards", answer.get("_shards", {}), set(es_types.ShardStatistics.__annotations__))
    hits = answer["hits"]
    _check_keys("hits", hits, set(es_types.HitsMetadata.__annotations__))
    hit_fields = set(es_types.Hit.__annotations__)
    for hit in hits["hits"]:
        _check_keys("hit", {k.lstrip("_"): v for k, v in hit.items()}, hit_fields)


class EsContractEmulator:
    """An ASGI app: ``EsContractEmulator(osmem_url).app``; see the module doc."""

    def __init__(self, backend_url: str) -> None:
        self.backend = backend_url.rstrip("/")
        self.calls: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self.open_pits: set[str] = set()
        self._client: httpx.AsyncClient | None = None
        self.app = Starlette(routes=[
            Route("/_index_template/{name}", self._template, methods=["PUT"]),
            Route("/_bulk", self._bulk, methods=["POST", "PUT"]),
            Route("/_search", self._search, methods=["POST", "GET"]),
            Route("/_pit", self._close_pit, methods=["DELETE"]),
            Route("/{index}/_pit", self._open_pit, methods=["POST"]),
            Route("/{index}/_mapping", self._forward_plain, methods=["GET"]),
            Route("/{index}/_count", self._forward_plain, methods=["POST", "GET"]),
            Route("/{path:path}", self._outside_contract, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]),
        ], exception_handlers={ContractViolation: self._violation})

    # ---------------------------------------------------------------- plumbing
    async def _violation(self, request: Request, exc: Exception) -> Response:
        self.violations.append(f"{request.method} {request.url.path}: {exc}")
        return self._answer({"error": {"type": "contract_violation", "reason": str(exc)}, "status": 400}, 400)

    @staticmethod
    def _answer(body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body), status_code=status, headers={
            "content-type": "application/vnd.elasticsearch+json;compatible-with=9",
            "x-elastic-product": "Elasticsearch"})

    async def _negotiate(self, request: Request, *, ndjson: bool = False) -> bytes:
        """The body, after checking the ES 9 client's content negotiation (406 as ES would otherwise)."""
        self.calls.append((request.method, request.url.path))
        accept = request.headers.get("accept", "")
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        expected = COMPAT_NDJSON if ndjson else COMPAT_JSON
        if accept != COMPAT_JSON or (body and content_type != expected):
            raise ContractViolation(f"406: accept={accept!r} content-type={content_type!r}, expected {expected!r}")
        return body

    async def _backend(self, method: str, path: str, *, params: Any = None, json_body: Any = None,
                       content: bytes | None = None, ndjson: bool = False) -> tuple[int, Any]:
        headers = {"content-type": "application/x-ndjson" if ndjson else "application/json"}
        if self._client is None:  # created on the server's own loop, reused for every request
            self._client = httpx.AsyncClient(base_url=self.backend, timeout=30)
        response = await self._client.request(method, path, params=params, json=json_body, content=content,
                                              headers=headers)
        return response.status_code, response.json() if response.content else {}

    # ---------------------------------------------------------------- endpoints
    async def _template(self, request: Request) -> Response:
        body = json.loads(await self._negotiate(request))
        _check_keys("index template", body, _api_params(IndicesClient.put_index_template))
        status, answer = await self._backend("PUT", request.url.path, json_body=body)
        return self._answer(answer, status)

    async def _bulk(self, request: Request) -> Response:
        raw = await self._negotiate(request, ndjson=True)
        lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
        for action in lines[::2]:
            _check_keys("bulk action", action, {"index", "create"})
        status, answer = await self._backend("POST", "/_bulk", params=dict(request.query_params),
                                             content=raw, ndjson=True)
        return self._answer(answer, status)

    async def _open_pit(self, request: Request) -> Response:
        await self._negotiate(request)
        index = request.path_params["index"]
        status, answer = await self._backend("POST", f"/{index}/_search/point_in_time",
                                             params=dict(request.query_params))
        if status != 200:
            return self._answer(answer, status)
        self.open_pits.add(answer["pit_id"])
        return self._answer({"_shards": answer.get("_shards", {}), "id": answer["pit_id"]})

    async def _close_pit(self, request: Request) -> Response:
        body = json.loads(await self._negotiate(request))
        _check_keys("close point in time", body, _api_params(AsyncElasticsearch.close_point_in_time))
        status, answer = await self._backend("DELETE", "/_search/point_in_time", json_body={"pit_id": [body["id"]]})
        freed = sum(1 for p in answer.get("pits", []) if p.get("successful"))
        self.open_pits.discard(body["id"])
        return self._answer({"succeeded": status == 200, "num_freed": freed}, status)

    async def _search(self, request: Request) -> Response:
        body = json.loads(await self._negotiate(request))
        check_search_body(body)
        status, answer = await self._backend("POST", "/_search", json_body=body)
        if status == 200:
            check_hits(answer)
            answer.setdefault("pit_id", body["pit"]["id"])
        return self._answer(answer, status)

    async def _forward_plain(self, request: Request) -> Response:
        raw = await self._negotiate(request)
        status, answer = await self._backend(request.method, request.url.path, params=dict(request.query_params),
                                             json_body=json.loads(raw) if raw else None)
        return self._answer(answer, status)

    async def _outside_contract(self, request: Request) -> Response:
        raise ContractViolation("endpoint outside the log store's contract")
