"""An OpenAI-compatible chat-completions server around one in-process ``llama_cpp.Llama``.

    python -m flywheel.platforms.local.model_server --model PATH [--lora PATH] --alias NAME \
        --host 127.0.0.1 --port P [--n-ctx N] [--threads N]

Prompts are rendered with :mod:`flywheel.chat_format` (the GGUF's own chat template, or the ChatML
fallback) and completed with ``create_completion``; llama.cpp keeps the KV cache of the previous
request and re-evaluates only the part of the prompt after the longest shared prefix, so the
tools/system prefix that every request of an evaluation shares is evaluated once. Tool calls are
parsed out of the generated text. One request runs at a time (one model context).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from flywheel.chat_format import STOP_SEQUENCES, ChatTemplateError, parse_completion, render_prompt

log = logging.getLogger("flywheel.model_server")

TOOL_CALL_OPEN = "<tool_call>"


class CompletionModel(Protocol):
    """The subset of ``llama_cpp.Llama`` the server uses (tests pass a fake)."""

    metadata: dict[str, str]

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]: ...

    def create_completion(self, prompt: Any, **kwargs: Any) -> dict[str, Any]: ...

    def n_ctx(self) -> int: ...


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    # Deterministic by default: the server exists to evaluate candidates reproducibly.
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False


class InputError(ValueError):
    """A request the server cannot serve as asked (HTTP 400)."""


def _tools_for_choice(tools: list[dict[str, Any]] | None, tool_choice: Any) -> tuple[list[dict] | None, bool]:
    """(tools to show the model, whether a tool call is required)."""
    if not tools or tool_choice in (None, "auto"):
        return tools or None, False
    if tool_choice == "none":
        return None, False
    if tool_choice == "required":
        return tools, True
    if isinstance(tool_choice, dict):
        wanted = (tool_choice.get("function") or {}).get("name")
        chosen = [t for t in tools if (t.get("function") or t).get("name") == wanted]
        if not chosen:
            raise InputError(f"tool_choice names function {wanted!r}, which is not among the tools")
        return chosen, True
    raise InputError(f"unsupported tool_choice {tool_choice!r}")


class ChatService:
    """Renders, completes and parses; serialises access to the single llama.cpp context."""

    def __init__(self, llm: CompletionModel, alias: str, *, chat_template: str | None = None,
                 eos_token: str = "") -> None:
        self.llm = llm
        self.alias = alias
        self.chat_template = chat_template
        self.eos_token = eos_token
        self._lock = asyncio.Lock()

    def build_prompt(self, req: ChatCompletionRequest) -> tuple[str, bool]:
        tools, required = _tools_for_choice(req.tools, req.tool_choice)
        try:
            prompt = render_prompt(req.messages, tools, self.chat_template, add_generation_prompt=True,
                                   eos_token=self.eos_token)
        except ChatTemplateError as exc:
            raise InputError(str(exc)) from exc
        # Forcing a call: start the answer with the opening tag, but only for templates that use
        # the <tool_call> convention (Qwen and our fallback), where the tag is what the model expects.
        prefill = required and TOOL_CALL_OPEN in prompt
        return (prompt + TOOL_CALL_OPEN if prefill else prompt), prefill

    def complete(self, req: ChatCompletionRequest) -> dict[str, Any]:
        if req.stream:
            raise InputError("stream=true is not supported by this server")
        if req.n != 1:
            raise InputError("only n=1 is supported")
        prompt, prefilled = self.build_prompt(req)
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        n_ctx = self.llm.n_ctx()
        if len(tokens) >= n_ctx:
            raise InputError(f"prompt is {len(tokens)} tokens, which does not fit the model's context window "
                             f"of {n_ctx} tokens (n_ctx); shorten the messages/tools or deploy with a larger "
                             f"context_length")
        room = n_ctx - len(tokens)
        max_tokens = min(req.max_tokens or req.max_completion_tokens or room, room)
        stop = list(STOP_SEQUENCES)
        if req.stop:
            stop += [req.stop] if isinstance(req.stop, str) else list(req.stop)
        started = time.perf_counter()
        result = self.llm.create_completion(
            prompt=tokens, max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p,
            stop=stop, seed=req.seed)
        elapsed_ms = (time.perf_counter() - started) * 1000
        choice = result["choices"][0]
        text = (TOOL_CALL_OPEN if prefilled else "") + choice.get("text", "")
        message = parse_completion(text)
        usage = result.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens", len(tokens))
        completion_tokens = usage.get("completion_tokens", 0)
        finish_reason = "tool_calls" if message.get("tool_calls") else (choice.get("finish_reason") or "stop")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.alias,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            "timings": {"total_ms": round(elapsed_ms, 1), **_llama_timings(self.llm)},
        }

    async def handle(self, req: ChatCompletionRequest) -> dict[str, Any]:
        async with self._lock:
            return await asyncio.to_thread(self.complete, req)


def _llama_timings(llm: Any) -> dict[str, Any]:
    """Prompt-eval / decode split of the last request from llama.cpp's perf counters, when available."""
    try:
        import llama_cpp

        perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
        out = {"prompt_eval_ms": round(perf.t_p_eval_ms, 1), "prompt_eval_tokens": perf.n_p_eval,
               "decode_ms": round(perf.t_eval_ms, 1), "decode_tokens": perf.n_eval}
        llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
        return out
    except Exception:  # noqa: BLE001 - timings are diagnostics only
        return {}


SHUTDOWN_TOKEN_ENV = "FLYWHEEL_MODEL_SERVER_TOKEN"


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def create_app(service: ChatService, *, shutdown_token: str | None = None,
               on_shutdown: Callable[[], None] = _terminate_self) -> FastAPI:
    """``shutdown_token``: enables ``POST /admin/shutdown`` (header ``X-Shutdown-Token``), so a worker on
    another host can tear the deployment down; the token lives only in the deployment's shared record."""
    app = FastAPI(title=f"flywheel model server ({service.alias})")

    @app.post("/admin/shutdown", status_code=202)
    async def shutdown(x_shutdown_token: str | None = Header(None)) -> dict[str, Any]:
        if not shutdown_token:
            raise HTTPException(404, "remote shutdown is not enabled on this server")
        if not x_shutdown_token or not hmac.compare_digest(x_shutdown_token, shutdown_token):
            raise HTTPException(403, "wrong or missing X-Shutdown-Token")
        asyncio.get_running_loop().call_later(0.1, on_shutdown)  # answer first, then stop
        return {"status": "stopping", "pid": os.getpid()}

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if p != 'body') or 'body'}: {err['msg']}" for err in exc.errors())
        return JSONResponse(status_code=400, content={"detail": f"invalid request: {problems}"})

    @app.exception_handler(InputError)
    async def _input_error(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": service.alias, "pid": os.getpid()}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": service.alias, "object": "model", "owned_by": "flywheel"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest) -> dict[str, Any]:
        return await service.handle(req)

    return app


def load_llama(model: str, lora: str | None, n_ctx: int, threads: int | None) -> Any:
    from llama_cpp import Llama

    kwargs: dict[str, Any] = {"model_path": model, "n_ctx": n_ctx, "verbose": False}
    if threads:
        kwargs.update(n_threads=threads, n_threads_batch=threads)
    if lora:
        kwargs["lora_path"] = lora
    return Llama(**kwargs)


def _special_token_text(llm: Any, token_id: int) -> str:
    try:
        return llm.detokenize([token_id], special=True).decode("utf-8", errors="ignore") if token_id >= 0 else ""
    except Exception:  # noqa: BLE001 - optional nicety for templates that use eos_token
        return ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="GGUF model file")
    parser.add_argument("--lora", default=None, help="GGUF LoRA adapter file")
    parser.add_argument("--alias", required=True, help="model id served in /v1/models and responses")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    started = time.monotonic()
    llm = load_llama(args.model, args.lora, args.n_ctx, args.threads)
    template = llm.metadata.get("tokenizer.chat_template") or None
    service = ChatService(llm, args.alias, chat_template=template,
                          eos_token=_special_token_text(llm, llm.token_eos()))
    log.info("loaded %s (lora=%s, n_ctx=%d, chat_template=%s) in %.1fs", args.model, args.lora, args.n_ctx,
             "gguf" if template else "fallback", time.monotonic() - started)

    import uvicorn

    app = create_app(service, shutdown_token=os.environ.pop(SHUTDOWN_TOKEN_ENV, None) or None)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
