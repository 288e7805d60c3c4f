"""Loading the bundled embedding model must not switch the process (and the workers it spawns) offline:
an ``HF_HUB_OFFLINE=1`` left in ``os.environ`` made NeMo Datastore uploads fail in a later test's worker."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("sentence_transformers", reason="the 'local' extra (sentence-transformers) is not installed")

from flywheel.retrieval.candidates import load_sentence_transformer


def test_loading_the_bundled_model_leaves_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    model = load_sentence_transformer(cached=False)
    assert model.encode(["where is my order"]).shape == (1, 384)
    assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ
