"""Request hygiene for every route, as ASGI middleware (so it also covers 404s and routes added later).

- POST/PUT/PATCH must say ``Content-Type: application/json`` (415 otherwise), body or not: browsers
  send text/plain, form and body-less POSTs cross-site without a CORS preflight.
- The body is counted as it streams in, chunked or not, and refused with 413 past the route's limit:
  a ``Content-Length`` check alone misses chunked bodies. The body (at most the limit) is then
  replayed to the app, which would read it whole anyway.
- CORS is off unless origins are configured; /codec/* has its own origins (the Temporal UI).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[..., Awaitable[None]]],
                   Awaitable[None]]

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CODEC_PREFIX = "/codec/"


def is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class RequestGuard:
    """415 for non-JSON writes, 413 past the body limit (``limits``: path prefix -> bytes, longest wins)."""

    def __init__(self, app: ASGIApp, *, default_limit: int, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.default_limit = default_limit
        self.limits = sorted((limits or {}).items(), key=lambda item: -len(item[0]))

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), self.default_limit)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["method"] in BODY_METHODS and not is_json_media_type(headers.get("content-type")):
            given = headers.get("content-type") or "none"
            await _reply(scope, receive, send, 415, f"Content-Type must be application/json (got {given[:100]})")
            return
        limit = self.limit_for(scope["path"])
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _reply(scope, receive, send, 400, "Content-Length is not a number")
                return
            if int(declared) > limit:
                await _reply(scope, receive, send, 413, f"request body too large: {declared} bytes (limit {limit})")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _reply(scope, receive, send, 413, f"request body too large: over {limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: disconnect notices

    return replay


async def _reply(scope: dict[str, Any], receive: Any, send: Any, status: int, detail: str) -> None:
    # Connection: close, because the rest of a refused body is never read.
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})
    await response(scope, receive, send)


class PathCORS:
    """CORS with one origin list for the API and another for /codec/* (no CORS where none is configured)."""

    def __init__(self, app: ASGIApp, *, api_origins: list[str], codec_origins: list[str]) -> None:
        self.app = app
        self.api = CORSMiddleware(app, allow_origins=api_origins, allow_methods=["GET", "POST", "DELETE"],
                                  allow_headers=["Authorization", "Content-Type", "X-API-Key"],
                                  allow_credentials=True) if api_origins else app
        self.codec = CORSMiddleware(app, allow_origins=codec_origins, allow_methods=["POST"],
                                    allow_headers=["Authorization", "Content-Type", "X-Namespace"],
                                    allow_credentials=True) if codec_origins else app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(CODEC_PREFIX):
            await self.codec(scope, receive, send)
        elif scope["type"] == "http":
            await self.api(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def guard(app: ASGIApp, *, api_origins: list[str], codec_origins: list[str], default_limit: int,
          limits: dict[str, int]) -> ASGIApp:
    """The app wrapped: CORS outermost (so refusals carry CORS headers and preflights are answered first)."""
    return PathCORS(RequestGuard(app, default_limit=default_limit, limits=limits),
                    api_origins=api_origins, codec_origins=codec_origins)
