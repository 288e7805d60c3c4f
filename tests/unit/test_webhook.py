"""Promotion webhook: signature (known HMAC vector), payload bytes, one-attempt delivery errors."""

import httpx
import pytest

from flywheel.webhook import (
    SIGNATURE_HEADER,
    WebhookConfigError,
    WebhookFailed,
    body_bytes,
    deliver,
    sign,
    verify,
)


def test_signature_is_hmac_sha256_of_the_body():
    body = b"The quick brown fox jumps over the lazy dog"
    assert sign(body, "key") == "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    assert verify(body, "key", sign(body, "key")) and not verify(body + b" ", "key", sign(body, "key"))
    assert not verify(body, "key", None)


def test_body_is_stable_whatever_the_key_order():
    assert body_bytes({"b": 1, "a": "é"}) == body_bytes({"a": "é", "b": 1}) == '{"a":"é","b":1}'.encode()


def test_delivery_signs_and_reports_failures(monkeypatch):
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200 if len(seen) > 1 else 500)

    monkeypatch.setenv("HOOK_SECRET", "s3")
    transport = httpx.MockTransport(answer)
    with pytest.raises(WebhookFailed, match="answered 500"):
        deliver("http://hook.test/x", {"a": 1}, delivery_id="j1", secret_env="HOOK_SECRET", transport=transport)
    assert deliver("http://hook.test/x", {"a": 1}, delivery_id="j1", secret_env="HOOK_SECRET",
                   transport=transport) == {"status": 200}
    assert verify(seen[-1].content, "s3", seen[-1].headers[SIGNATURE_HEADER])
    assert "s3" not in str(seen[-1].headers)
    monkeypatch.delenv("HOOK_SECRET")
    with pytest.raises(WebhookConfigError, match="HOOK_SECRET is not set"):
        deliver("http://hook.test/x", {}, delivery_id="j1", secret_env="HOOK_SECRET", transport=transport)
