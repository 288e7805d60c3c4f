"""Codec server: ``POST /codec/encode`` and ``/codec/decode`` for the Temporal UI and CLI.

Point the Temporal UI's codec endpoint (or ``temporal workflow show --codec-endpoint``) at
``http://<api>/codec`` and authorised people see decrypted payloads; everyone else sees ciphertext.
The body is Temporal's JSON form of ``Payloads``: ``{"payloads": [{"metadata": {k: base64}, "data": base64}]}``.
Callers need the ``decode_payloads`` permission (operator, reviewer, admin); the browser origin of
the UI is allowed by ``security.payload_encryption.codec_cors_origins`` (see request_guard.PathCORS).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from google.protobuf import json_format
from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payloads

from starter.auth import Permission, Principal, require

MAX_PAYLOADS = 1000

codec_router = APIRouter(prefix="/codec", tags=["codec"])
_may_decode = require(Permission.decode_payloads)


class CodecPayload(BaseModel):
    metadata: dict[str, str] = Field(default_factory=dict, description="Metadata values, base64.")
    data: str = Field("", description="Payload bytes, base64.")


class CodecBody(BaseModel):
    payloads: list[CodecPayload] = Field(default_factory=list, max_length=MAX_PAYLOADS)


def _codec(request: Request) -> Any:
    codec = getattr(request.app.state, "payload_codec", None)
    if codec is None:
        raise HTTPException(404, "payload encryption is not configured on this API")
    return codec


def _payloads(body: CodecBody) -> Payloads:
    try:
        return json_format.ParseDict(body.model_dump(), Payloads())
    except json_format.ParseError as exc:
        raise HTTPException(422, f"payloads: not valid base64 payloads ({str(exc)[:200]})") from exc


async def _run(request: Request, body: CodecBody, encode: bool) -> dict[str, Any]:
    codec = _codec(request)
    payloads = list(_payloads(body).payloads)
    try:
        out = await (codec.encode(payloads) if encode else codec.decode(payloads))
    except ValueError as exc:  # PayloadKeyError: unknown key id, failed authentication
        raise HTTPException(422, str(exc)) from exc
    return {"payloads": [json_format.MessageToDict(p) for p in out]}


@codec_router.post("/encode")
async def encode(body: CodecBody, request: Request,
                 _: Principal = Depends(_may_decode)) -> dict[str, Any]:
    """Encrypt payloads with the active key."""
    return await _run(request, body, encode=True)


@codec_router.post("/decode")
async def decode(body: CodecBody, request: Request,
                 _: Principal = Depends(_may_decode)) -> dict[str, Any]:
    """Decrypt payloads (unencrypted ones come back unchanged)."""
    return await _run(request, body, encode=False)
