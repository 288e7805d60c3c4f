"""The trainer's dequantised base weights through the artifact store (moto S3 over HTTP): the host that built
them publishes them once, a host without them pulls the same bytes instead of dequantising the GGUF again."""

from __future__ import annotations

import pytest

from flywheel.platforms.local import weights_cache
from tests.stores.cluster_settings import host_settings


@pytest.fixture
def store(tmp_path, s3_root):
    from flywheel.artifacts import open_artifact_store

    return open_artifact_store(host_settings(tmp_path, "a", s3_root, "10.0.0.1"))


def gguf(directory, content: bytes = b"GGUF v3 weights"):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gemma-3-270m-q4_k_m.gguf"
    path.write_bytes(content)
    return path


def built_cache(directory):
    directory.mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(b"\x00" * 4096)
    (directory / "config.json").write_text('{"model_type": "gemma3_text"}')
    (directory / "tokenizer.json").write_text("{}")
    return directory


def test_one_host_publishes_another_pulls_the_same_bytes(tmp_path, store):
    model_a = gguf(tmp_path / "a" / "models")
    cache_a = built_cache(tmp_path / "a" / "cache" / "x")
    assert weights_cache.push(store, model_a, cache_a) is True
    assert weights_cache.push(store, model_a, cache_a) is False  # already there: not uploaded twice

    model_b = gguf(tmp_path / "b" / "models")  # same content, other host, other path and mtime
    cache_b = tmp_path / "b" / "cache" / "y"
    assert weights_cache.pull(store, model_b, cache_b) is True
    assert sorted(p.name for p in cache_b.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (cache_b / name).read_bytes() == (cache_a / name).read_bytes()
    assert weights_cache.pull(store, model_b, cache_b) is False  # present here: nothing to do


def test_unfinished_upload_and_other_weights_are_not_pulled(tmp_path, store):
    model = gguf(tmp_path / "a" / "models")
    prefix = weights_cache.remote_prefix(model)
    store.put(f"{prefix}/model.safetensors", b"partial")  # no COMPLETE: an upload cut off mid-way
    assert weights_cache.pull(store, model, tmp_path / "b" / "cache") is False

    weights_cache.push(store, model, built_cache(tmp_path / "a" / "cache"))
    other = gguf(tmp_path / "c" / "models", b"another quantisation")
    assert weights_cache.remote_prefix(other) != prefix  # named by content, not by file name
    assert weights_cache.pull(store, other, tmp_path / "c" / "cache") is False


def test_gguf_digest_is_remembered_and_recomputed_when_the_file_changes(tmp_path):
    model = gguf(tmp_path)
    first = weights_cache.gguf_sha256(model)
    assert (tmp_path / (model.name + ".sha256")).read_text().endswith(first)
    model.write_bytes(b"changed weights!")
    assert weights_cache.gguf_sha256(model) != first
