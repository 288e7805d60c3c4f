"""A tiny scripted OpenAI-compatible server (``/v1/models``, ``/v1/chat/completions``, ``/v1/embeddings``) on
127.0.0.1.

It stands in for a NIM/candidate model in tests: a ``responder(request_json) -> message dict`` decides what
the "model" answers (e.g. the expected tool call for some rows and a wrong one for others); an
``embedder(model, texts, input_type) -> vectors`` does the same for embedding models. The served model list
is mutable so tests can make a LoRA adapter appear late, like a real NIM after customization.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from tests.emulators.threaded_server import ThreadedServer

Responder = Callable[[dict[str, Any]], dict[str, Any]]
Embedder = Callable[[str, list[str], str | None], list[list[float]]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_first_tool(request: dict[str, Any]) -> dict[str, Any]:
    """Default responder: call the first offered tool with no arguments."""
    tools = request.get("tools") or []
    if not tools:
        return {"role": "assistant", "content": "ok"}
    name = tools[0]["function"]["name"]
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": name, "arguments": "{}"}}]}


class ScriptedOpenAI:
    def __init__(self, models: list[str] | None = None, responder: Responder = echo_first_tool,
                 embedder: Embedder | None = None) -> None:
        self.models: list[str] = list(models or [])
        self.responder = responder
        self.embedder = embedder
        self.embedding_requests: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []  # the Authorization header of each chat request, in order
        self.lock = threading.Lock()
        self.port = free_port()
        self.app = self._build()

    @property
    def base_url(self) -> str:  # ends in /v1
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        def models() -> dict[str, Any]:
            with self.lock:
                ids = list(self.models)
            return {"object": "list",
                    "data": [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in ids]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> dict[str, Any]:
            body = await request.json()
            with self.lock:
                self.requests.append(body)
                self.authorizations.append(request.headers.get("authorization"))
                known = body.get("model") in self.models
            if not known:
                raise HTTPException(404, f"model {body.get('model')!r} not found")
            message = self.responder(body)
            return {"id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": message,
                                 "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> dict[str, Any]:
            body = await request.json()
            texts = [body["input"]] if isinstance(body.get("input"), str) else list(body.get("input") or [])
            with self.lock:
                self.embedding_requests.append({"model": body.get("model"), "n": len(texts),
                                                "input_type": body.get("input_type")})
                known = body.get("model") in self.models
            if not known or self.embedder is None:
                raise HTTPException(404, f"embedding model {body.get('model')!r} not found")
            vectors = self.embedder(body["model"], texts, body.get("input_type"))
            return {"object": "list", "model": body["model"],
                    "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                    "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)}}

        return app

    def start(self) -> ScriptedOpenAI:
        self._runner = ThreadedServer(self.app, self.port, "scripted OpenAI server")
        self._runner.start_server()
        return self

    def stop(self) -> None:
        self._runner.stop()

    def add_model(self, model: str) -> None:
        with self.lock:
            if model not in self.models:
                self.models.append(model)

    def remove_model(self, model: str) -> None:
        with self.lock:
            if model in self.models:
                self.models.remove(model)
