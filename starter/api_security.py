"""Security of the starter API in one place: which permission each route needs, the dependency that
enforces it, and ``secure_app`` (authenticator, payload codec, request guard, codec routes).

The route table is the single source of truth: a route missing from it needs ``administer`` (admin
only), so a route added later is closed until someone decides who may call it. /health is public.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from starlette.routing import Route

from flywheel.config import Settings
from starter.auth.authenticator import (
    _CHALLENGE,
    Authenticator,
    AuthError,
    _api_key_header,
    _bearer,
    authenticator_of,
)
from starter.auth.roles import Permission, Principal

log = structlog.get_logger("starter.audit")

P = Permission
# The reviewer page's shells and static files hold no data (the page reads everything through the JSON
# API with the user's key), and a browser navigating to them cannot send a bearer token.
PUBLIC_ROUTES = frozenset({("GET", "/health"), ("GET", "/ui"), ("GET", "/ui/jobs/{job_id}"),
                           ("GET", "/ui/schedules"), ("GET", "/ui/static/{name}")})
ROUTE_PERMISSIONS: dict[tuple[str, str], Permission] = {
    ("GET", "/api/jobs"): P.read,
    ("GET", "/api/jobs/{job_id}"): P.read,
    ("POST", "/api/jobs"): P.operate,
    ("POST", "/api/jobs/{job_id}/cancel"): P.operate,
    ("DELETE", "/api/jobs/{job_id}"): P.operate,
    ("POST", "/api/jobs/{job_id}/promote"): P.review,
    ("POST", "/api/jobs/{job_id}/reject"): P.review,
    ("POST", "/api/logs"): P.operate,
    ("GET", "/api/schedules"): P.read,
    ("GET", "/api/schedules/{schedule_id}"): P.read,
    ("POST", "/api/schedules"): P.operate,
    ("POST", "/api/schedules/{schedule_id}/pause"): P.operate,
    ("POST", "/api/schedules/{schedule_id}/unpause"): P.operate,
    ("POST", "/api/schedules/{schedule_id}/trigger"): P.operate,
    ("DELETE", "/api/schedules/{schedule_id}"): P.operate,
    ("POST", "/codec/encode"): P.decode_payloads,
    ("POST", "/codec/decode"): P.decode_payloads,
    ("GET", "/openapi.json"): P.read,
    ("GET", "/docs"): P.read,
    ("GET", "/docs/oauth2-redirect"): P.read,
    ("GET", "/redoc"): P.read,
    # The page's fragment renderer only formats what the caller sends, but it is an API like any other.
    ("POST", "/ui/render/jobs"): P.read,
    ("POST", "/ui/render/job"): P.read,
    ("POST", "/ui/render/schedules"): P.read,
}


def permission_for(method: str, path_template: str) -> Permission | None:
    """None for public routes; ``administer`` for routes nobody listed."""
    if (method, path_template) in PUBLIC_ROUTES:
        return None
    return ROUTE_PERMISSIONS.get((method, path_template), P.administer)


async def _authorize(request: Request, method: str, template: str, token: str | None) -> Principal | None:
    permission = permission_for(method, template)
    if permission is None:
        return None
    peer = request.client.host if request.client else None
    try:
        principal = await authenticator_of(request).authenticate(token, peer)
    except AuthError as exc:
        raise HTTPException(exc.status_code, exc.detail,
                            headers=_CHALLENGE if exc.status_code == 401 else None) from exc
    if not principal.can(permission):
        roles = ", ".join(sorted(r.value for r in principal.roles)) or "none"
        raise HTTPException(403, f"{principal.label} (roles: {roles}) may not {permission.value} here")
    request.state.principal = principal
    return principal


async def authorize(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    api_key: str | None = Depends(_api_key_header),
) -> Principal | None:
    """App-wide dependency: authenticates and checks the route's permission (HEAD counts as GET)."""
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    method = "GET" if request.method == "HEAD" else request.method
    return await _authorize(request, method, template, bearer.credentials if bearer else api_key)


def _token_from_headers(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    return request.headers.get("x-api-key") or None


def _guard_plain_route(route_app: Any, path: str) -> Any:
    """FastAPI's own pages (/openapi.json, /docs, /redoc) are plain routes that app dependencies skip."""

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        try:
            await _authorize(request, "GET", path, _token_from_headers(request))
        except HTTPException as exc:
            response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
            await response(scope, receive, send)
            return
        await route_app(scope, receive, send)

    return guarded


def principal_of(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):  # a route outside the table's protection: refuse, never guess
        raise HTTPException(403, "no authenticated principal for this request")
    return principal


def audit(request: Request, action: str, **fields: Any) -> None:
    """One structured line per state change, naming who did it (never secrets or bodies)."""
    log.info("audit", action=action, principal=principal_of(request).label, **fields)


# ---------------------------------------------------------------------------------------------- OpenAPI

_ERROR_SCHEMA = {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}},
                 "title": "Error"}
_VALIDATION_ERROR_SCHEMA = {
    "type": "object", "required": ["detail"], "title": "HTTPValidationError",
    "properties": {
        "detail": {"type": "string", "description": "Every problem, as 'field: message' joined by '; '."},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}, "type": {"type": "string"}}}},
    },
}
_COMMON_ERRORS = {"400": "Bad request", "401": "No or invalid credentials", "403": "Not allowed for this principal",
                  "404": "Not found", "409": "Conflict", "413": "Body too large", "415": "Not application/json",
                  "503": "A dependency (Temporal, a store, the identity provider) is unavailable"}


def document_errors(app: FastAPI) -> None:
    """The schema says what the API really answers: ``{"detail": "..."}`` errors (422 adds ``errors``),
    401/403/413/415 on every route, and the bearer schemes."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["HTTPValidationError"] = _VALIDATION_ERROR_SCHEMA
        components["Error"] = _ERROR_SCHEMA
        ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                for code, text in _COMMON_ERRORS.items():
                    if path == "/health" and code in ("401", "403"):
                        continue
                    responses.setdefault(code, {"description": text, **ref})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------- wiring


def secure_app(app: FastAPI, settings: Settings, *, bind_host: str | None = None) -> None:
    """Authenticator and payload codec on ``app.state``, codec routes, and the request guard middleware.

    Raises ConfigError for settings that would be insecure (anonymous reads on a non-loopback bind)
    or incomplete (a payload key env var that is not set).
    """
    from starter.codec_server import codec_router
    from starter.request_guard import PathCORS, RequestGuard

    sec = settings.security
    app.state.authenticator = Authenticator.from_settings(settings, bind_host=bind_host)
    app.state.payload_codec = None
    codec_origins: list[str] = []
    if sec.payload_encryption is not None:
        from flywheel.config import ConfigError
        from workers.payload_codec import AesGcmCodec, PayloadKeyError

        try:
            app.state.payload_codec = AesGcmCodec.from_config(sec.payload_encryption)
        except PayloadKeyError as exc:
            raise ConfigError(str(exc)) from exc
        codec_origins = sec.payload_encryption.codec_cors_origins
    app.include_router(codec_router)
    document_errors(app)
    for route in app.router.routes:
        if not isinstance(route, APIRoute) and isinstance(route, Route):
            route.app = _guard_plain_route(route.app, route.path)
    # Starlette: the middleware added last runs first. CORS outermost, then the guard.
    from starter.ui import MAX_RENDER_BYTES

    app.add_middleware(RequestGuard, default_limit=sec.max_body_bytes,
                       limits={"/api/logs": sec.max_ingest_body_bytes, "/codec/": sec.max_codec_body_bytes,
                               "/ui/render/": MAX_RENDER_BYTES})
    app.add_middleware(PathCORS, api_origins=sec.cors_origins, codec_origins=codec_origins)
