"""AES-GCM payload codec: round trip, key ring rotation, tampering, key configuration errors."""

from __future__ import annotations

import base64
import logging

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes

from flywheel.config import load_settings
from flywheel.security_config import PayloadEncryptionConfig
from workers.payload_codec import (
    ENCODING,
    KEY_ID_META,
    AesGcmCodec,
    PayloadKeyError,
    data_converter_for,
    new_key,
)

SECRET_TEXT = b'{"request": "where is order ORD-000123?", "api_key_env": "NGC_KEY"}'


def plain(data: bytes = SECRET_TEXT) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


def ring(*ids: str) -> dict[str, bytes]:
    return {i: base64.b64decode(new_key()) for i in ids}


async def test_round_trip_hides_data_and_metadata():
    codec = AesGcmCodec(ring("k1"), "k1")
    [sealed] = await codec.encode([plain()])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata[KEY_ID_META] == b"k1"
    assert b"ORD-000123" not in sealed.SerializeToString() and b"json/plain" not in sealed.SerializeToString()
    [opened] = await codec.decode([sealed])
    assert opened == plain()
    again = await codec.encode([plain()])
    assert again[0].data != sealed.data  # a fresh nonce every time


async def test_rotation_without_downtime():
    keys = ring("old", "new")
    before = AesGcmCodec({"old": keys["old"]}, "old")  # a process still on the old ring
    after = AesGcmCodec(keys, "new")  # rolled out: both keys, encrypting with the new one
    [old_payload] = await before.encode([plain(b"1")])
    [new_payload] = await after.encode([plain(b"2")])
    assert new_payload.metadata[KEY_ID_META] == b"new"
    assert [p.data for p in await after.decode([old_payload, new_payload])] == [b"1", b"2"]
    with pytest.raises(PayloadKeyError, match=r"'new'.*not in the key ring"):
        await before.decode([new_payload])


async def test_unencrypted_history_still_reads():
    codec = AesGcmCodec(ring("k1"), "k1")
    assert await codec.decode([plain()]) == [plain()]


async def test_tampering_and_relabelling_are_detected():
    keys = ring("a", "b")
    codec = AesGcmCodec(keys, "a")
    [sealed] = await codec.encode([plain()])
    flipped = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(PayloadKeyError, match="failed authentication"):
        await codec.decode([flipped])
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID_META: b"b"}, data=sealed.data)
    with pytest.raises(PayloadKeyError, match="failed authentication"):
        await codec.decode([relabelled])


def test_keys_come_from_named_env_vars_and_errors_never_show_values():
    config = PayloadEncryptionConfig(keys=[{"id": "k1", "env": "FW_KEY_1"}, {"id": "k2", "env": "FW_KEY_2"}])
    key1, key2 = new_key(), new_key()
    codec = AesGcmCodec.from_config(config, {"FW_KEY_1": key1, "FW_KEY_2": key2})
    assert codec.active_key_id == "k2"  # the last listed is the newest
    with pytest.raises(PayloadKeyError, match="FW_KEY_2 is not set"):
        AesGcmCodec.from_config(config, {"FW_KEY_1": key1})
    short = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(PayloadKeyError) as err:
        AesGcmCodec.from_config(config, {"FW_KEY_1": key1, "FW_KEY_2": short})
    assert "FW_KEY_2" in str(err.value) and short not in str(err.value)
    with pytest.raises(ValueError, match="encrypt_with"):
        PayloadEncryptionConfig(keys=[{"id": "k1", "env": "A"}], encrypt_with="k9")
    with pytest.raises(ValueError, match="NAME"):
        PayloadEncryptionConfig(keys=[{"id": "k1", "env": key1}])


def test_data_converter_for_settings(monkeypatch, tmp_path):
    plain_settings = load_settings(environ={})
    assert data_converter_for(plain_settings) is pydantic_data_converter
    monkeypatch.setenv("FW_TEST_KEY", new_key())
    settings = load_settings(environ={}, overrides={"security": {"payload_encryption": {
        "keys": [{"id": "k1", "env": "FW_TEST_KEY"}]}}})
    converter = data_converter_for(settings)
    assert isinstance(converter.payload_codec, AesGcmCodec)
    assert converter.failure_converter_class is DefaultFailureConverterWithEncodedAttributes
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class


@pytest.mark.parametrize("value", [None, "bm90LWEta2V5"])  # unset, and base64 of the wrong length
def test_worker_refuses_to_start_without_a_usable_payload_key(monkeypatch, value):
    from workers.main import main as worker_main

    monkeypatch.setenv("FLYWHEEL__SECURITY__PAYLOAD_ENCRYPTION", "{keys: [{id: k1, env: FW_TEST_MISSING_KEY}]}")
    if value is None:
        monkeypatch.delenv("FW_TEST_MISSING_KEY", raising=False)
    else:
        monkeypatch.setenv("FW_TEST_MISSING_KEY", value)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the worker configures process-wide logging
    try:
        with pytest.raises(SystemExit) as exit_:
            worker_main(["--queue", "cpu"])
    finally:
        root.handlers[:], root.level = handlers, level
    assert exit_.value.code == 2
