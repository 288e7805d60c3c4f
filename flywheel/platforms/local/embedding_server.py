"""An OpenAI-compatible embeddings server around one sentence-transformers model directory.

    python -m flywheel.platforms.local.embedding_server --model-dir DIR --alias NAME \
        --host 127.0.0.1 --port P

Routes: ``POST /v1/embeddings`` (``{model, input: str | [str], encoding_format?: "float", input_type?}``;
``input_type`` is accepted and ignored: a symmetric model embeds queries and passages alike),
``GET /v1/models``, ``GET /health`` (``{"status": "ok", "pid": ...}``). Embeddings are
L2-normalised. Errors are 4xx ``{"detail": ...}``. One request is encoded at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("flywheel.embedding_server")

MAX_INPUTS = 2048


class Encoder(Protocol):
    def encode(self, texts: list[str], **kwargs: Any) -> Any: ...


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    input: str | list[str] = Field(...)
    encoding_format: str = "float"
    input_type: str | None = None


def create_app(encoder: Encoder, alias: str, *, batch_size: int = 64) -> FastAPI:
    app = FastAPI(title=f"embeddings: {alias}")
    lock = asyncio.Lock()
    created = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"detail": f"{where}: {first.get('msg')}" if where else str(first.get("msg"))},
                            status_code=422)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "pid": os.getpid(), "model": alias}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": alias, "object": "model", "created": created,
                                            "owned_by": "flywheel"}]}

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest) -> Any:
        if body.model not in (None, alias):
            return JSONResponse({"detail": f"model {body.model!r} is not served here (serving {alias!r})"},
                                status_code=404)
        if body.encoding_format != "float":
            return JSONResponse({"detail": "encoding_format: only 'float' is supported"}, status_code=400)
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if not texts:
            return JSONResponse({"detail": "input: must not be empty"}, status_code=400)
        if len(texts) > MAX_INPUTS:
            return JSONResponse({"detail": f"input: at most {MAX_INPUTS} texts per request"}, status_code=400)
        async with lock:
            vectors = await asyncio.to_thread(encoder.encode, texts, batch_size=batch_size, convert_to_numpy=True,
                                              normalize_embeddings=True, show_progress_bar=False)
        tokens = sum(len(t.split()) for t in texts)  # whitespace words: an honest, cheap usage estimate
        return {"object": "list", "model": alias,
                "data": [{"object": "embedding", "index": i, "embedding": [float(x) for x in row]}
                         for i, row in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="sentence-transformers directory (default: bundled MiniLM)")
    parser.add_argument("--alias", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    import uvicorn

    from flywheel.retrieval.candidates import load_sentence_transformer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    model = load_sentence_transformer(args.model_dir, args.device)
    log.info("serving %s from %s on %s:%d", args.alias, args.model_dir or "bundled MiniLM", args.host, args.port)
    uvicorn.run(create_app(model, args.alias), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
