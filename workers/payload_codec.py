"""AES-GCM encryption of every Temporal payload, with a key ring for rotation without downtime.

Each payload is serialised whole (metadata and data) and sealed with AES-256-GCM under the ring's
active key; the result carries ``encoding: binary/encrypted`` and ``encryption-key-id`` in its
metadata, so any process holding that key, old or new, opens it. A payload that is not encrypted
(history written before encryption was turned on) passes through unchanged when decoding.
The key id is bound to the ciphertext as associated data: relabelling a payload breaks it.

Keys come from environment variables named in the settings (base64 of 32 random bytes; make one
with ``python -m workers.payload_codec new-key``). Errors name the variable, never its value.
Failures (messages, stack traces) are encrypted too: see :func:`encrypted_data_converter`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import secrets
import sys
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from flywheel.security_config import PayloadEncryptionConfig

ENCODING = b"binary/encrypted"
KEY_ID_META = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32


class PayloadKeyError(ValueError):
    """A configured key is missing or malformed, or a payload names a key the ring does not hold."""


def decode_key(text: str, env_name: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadKeyError(f"{env_name}: not valid base64") from exc
    if len(key) != KEY_BYTES:
        raise PayloadKeyError(f"{env_name}: must decode to {KEY_BYTES} bytes (got {len(key)})")
    return key


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


class AesGcmCodec(PayloadCodec):
    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise PayloadKeyError(f"active key {active_key_id!r} is not in the key ring")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key_id = active_key_id

    @classmethod
    def from_config(cls, config: PayloadEncryptionConfig, environ: Mapping[str, str] | None = None) -> AesGcmCodec:
        environ = os.environ if environ is None else environ
        keys: dict[str, bytes] = {}
        for ref in config.keys:
            text = environ.get(ref.env)
            if not text:
                raise PayloadKeyError(
                    f"security.payload_encryption.keys[{ref.id}]: env var {ref.env} is not set")
            keys[ref.id] = decode_key(text, ref.env)
        return cls(keys, config.active_key_id)

    def _seal(self, payload: Payload) -> Payload:
        nonce = secrets.token_bytes(NONCE_BYTES)
        key_id = self.active_key_id.encode()
        sealed = self._ciphers[self.active_key_id].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID_META: key_id}, data=nonce + sealed)

    def _open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was enabled
        key_id = payload.metadata.get(KEY_ID_META, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyError(f"payload encrypted with key {key_id!r}, which is not in the key ring")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode())
        except InvalidTag as exc:
            raise PayloadKeyError(
                f"payload under key {key_id!r} failed authentication (tampered or wrong key)") from exc
        return Payload.FromString(plain)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(p) for p in payloads]


def encrypted_data_converter(base: DataConverter, codec: PayloadCodec) -> DataConverter:
    """``base`` with the codec on every payload, and failure messages/stack traces moved into an encoded
    payload (Temporal otherwise stores them in clear next to the encrypted inputs)."""
    return dataclasses.replace(base, payload_codec=codec,
                               failure_converter_class=DefaultFailureConverterWithEncodedAttributes)


def data_converter_for(settings: object, base: DataConverter | None = None) -> DataConverter:
    """The converter every client and worker of these settings uses: encrypted when configured."""
    if base is None:
        from temporalio.contrib.pydantic import pydantic_data_converter

        base = pydantic_data_converter
    config = getattr(getattr(settings, "security", None), "payload_encryption", None)
    if config is None:
        return base
    return encrypted_data_converter(base, AesGcmCodec.from_config(config))


if __name__ == "__main__":
    if sys.argv[1:] == ["new-key"]:
        print(new_key())
        sys.exit(0)
    print("usage: python -m workers.payload_codec new-key", file=sys.stderr)
    sys.exit(2)
