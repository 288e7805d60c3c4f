"""Request hygiene middleware: content type, streamed body limits (over real HTTP, chunked), CORS."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from starter.request_guard import guard, is_json_media_type
from tests.emulators.openai_scripted import free_port
from tests.emulators.threaded_server import ThreadedServer

LIMIT = 1024
BIG_LIMIT = 64 * 1024


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"received": len(body)})


def make_app(**cors):
    inner = Starlette(routes=[Route("/api/x", echo, methods=["GET", "POST", "DELETE"]),
                              Route("/api/logs", echo, methods=["POST"]),
                              Route("/codec/decode", echo, methods=["POST"])])
    return guard(inner, api_origins=cors.get("api", []), codec_origins=cors.get("codec", []),
                 default_limit=LIMIT, limits={"/api/logs": BIG_LIMIT})


@pytest.fixture(scope="module")
def server():
    port = free_port()
    runner = ThreadedServer(make_app(), port, "guarded app")
    runner.start_server()
    yield f"http://127.0.0.1:{port}"
    runner.stop()


def chunks(total: int, size: int = 4096):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


JSON = {"content-type": "application/json"}


def test_chunked_body_over_limit_is_413_over_real_http(server):
    with httpx.Client(base_url=server, timeout=10) as http:
        ok = http.post("/api/x", content=chunks(LIMIT, 100), headers=JSON)
        assert ok.status_code == 200 and ok.json() == {"received": LIMIT}
        assert "content-length" not in ok.request.headers  # really chunked
        refused = http.post("/api/x", content=chunks(22 * 1024 * 1024), headers=JSON)
        assert refused.status_code == 413 and "too large" in refused.json()["detail"]
        # the per-route limit: ingest takes more
        assert http.post("/api/logs", content=chunks(BIG_LIMIT), headers=JSON).status_code == 200
        assert http.post("/api/logs", content=chunks(BIG_LIMIT + 1), headers=JSON).status_code == 413


def test_declared_length_over_limit_is_413_before_reading(server):
    with httpx.Client(base_url=server, timeout=10) as http:
        refused = http.post("/api/x", content=b"x" * (LIMIT + 1), headers=JSON)
        assert refused.status_code == 413 and str(LIMIT + 1) in refused.json()["detail"]


def test_every_method_is_limited(server):
    with httpx.Client(base_url=server, timeout=10) as http:
        assert http.request("DELETE", "/api/x", content=chunks(LIMIT + 1)).status_code == 413
        assert http.request("GET", "/api/x", content=chunks(LIMIT + 1)).status_code == 413


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx", "text/json"])
async def test_posts_must_be_json(content_type):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://t") as http:
        headers = {"content-type": content_type} if content_type else {}
        response = await http.post("/api/x", content=b'{"a": 1}' if content_type else b"", headers=headers)
        assert response.status_code == 415 and "application/json" in response.json()["detail"]
        assert (await http.post("/api/x", headers={"content-type": "application/json; charset=utf-8"})).status_code \
            == 200
        assert (await http.get("/api/x")).status_code == 200  # reads need no content type


def test_media_types():
    assert is_json_media_type("application/json") and is_json_media_type("Application/JSON; charset=UTF-8")
    assert is_json_media_type("application/problem+json")
    assert not is_json_media_type("text/plain") and not is_json_media_type(None)


async def test_cors_is_off_unless_configured():
    preflight = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://t") as http:
        response = await http.get("/api/x", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-origin" not in (await http.options("/api/x", headers=preflight)).headers
    app = make_app(api=["https://ops.example"], codec=["http://localhost:8233"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        allowed = await http.get("/api/x", headers={"origin": "https://ops.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://ops.example"
        other = await http.get("/api/x", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        # the Temporal UI's origin may call the codec (with its token and namespace header), not the API
        ui = {"origin": "http://localhost:8233", "access-control-request-method": "POST",
              "access-control-request-headers": "authorization,content-type,x-namespace"}
        codec = await http.options("/codec/decode", headers=ui)
        assert codec.status_code == 200 and codec.headers["access-control-allow-origin"] == "http://localhost:8233"
        api = await http.options("/api/x", headers=ui)
        assert api.headers.get("access-control-allow-origin") != "http://localhost:8233"
