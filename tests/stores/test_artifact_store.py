"""Artifact store over ``file://`` and ``s3://`` (moto's S3 server over real HTTP): atomic writes, sha256
verified on every read, streaming, put/get/open/exists/list/delete, keys resolved against one root."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import pytest

from flywheel.artifacts import (
    ArtifactIntegrityError,
    ArtifactKeyError,
    ArtifactNotFoundError,
    ArtifactStore,
    artifact_root,
    open_artifact_store,
)
from flywheel.config import ConfigError, load_settings

CREDS = {"TEST_S3_KEY": "testing", "TEST_S3_SECRET": "testing"}


def _s3_settings(endpoint: str, bucket: str, prefix: str = "flywheel/root") -> dict:
    return {"artifacts": {"root": f"s3://{bucket}/{prefix}", "chunk_size_mib": 5, "max_retries": 0, "s3": {
        "endpoint_url": endpoint, "access_key_id_env": "TEST_S3_KEY", "secret_access_key_env": "TEST_S3_SECRET"}}}


def _boto(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                        region_name="us-east-1")


class Backend:
    """Raw access to what is stored, bypassing the artifact store (to tamper and to look)."""

    def __init__(self, kind: str, store: ArtifactStore, *, path: Path | None = None, s3=None, bucket: str = "",
                 prefix: str = "") -> None:
        self.kind, self.store, self.path, self.s3, self.bucket, self.prefix = kind, store, path, s3, bucket, prefix

    def write(self, key: str, data: bytes) -> None:
        if self.kind == "file":
            target = self.path / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        else:
            self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}", Body=data)

    def names(self) -> set[str]:
        if self.kind == "file":
            return {str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file()}
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {o["Key"][len(self.prefix) + 1:] for o in listed}


@pytest.fixture(params=["file", "s3"])
def backend(request, tmp_path, monkeypatch) -> Backend:
    if request.param == "file":
        root = tmp_path / "artifacts"
        settings = load_settings(environ={}, overrides={"artifacts": {"root": root.as_uri(), "chunk_size_mib": 5}})
        return Backend("file", open_artifact_store(settings), path=root)
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"b{uuid.uuid4().hex[:12]}"
    s3 = _boto(endpoint)
    s3.create_bucket(Bucket=bucket)
    settings = load_settings(environ={}, overrides=_s3_settings(endpoint, bucket))
    return Backend("s3", open_artifact_store(settings, environ=CREDS), s3=s3, bucket=bucket, prefix="flywheel/root")


def test_put_every_kind_of_source_and_read_back(backend, tmp_path):
    store = backend.store
    local = tmp_path / "local.bin"
    local.write_bytes(b"from a path" * 100)
    sources = {"a/bytes.txt": b"hello", "a/path.bin": local, "a/file.bin": io.BytesIO(b"file object"),
               "a/chunks.bin": iter([b"one ", b"", b"two"])}
    expected = {"a/bytes.txt": b"hello", "a/path.bin": local.read_bytes(), "a/file.bin": b"file object",
                "a/chunks.bin": b"one two"}
    for key, source in sources.items():
        info = store.put(key, source)
        assert info.size == len(expected[key]) and info.sha256 == hashlib.sha256(expected[key]).hexdigest()
        assert info.uri == f"{store.root_uri}/{key}"
    for key, data in expected.items():
        assert store.read_bytes(key) == data
        assert store.read_bytes(store.uri(key)) == data  # full URIs under the root work too
        with store.open(key) as reader:
            assert reader.read(3) + reader.read() == data
    assert [i.key for i in store.list("a")] == sorted(expected)
    assert [i.key for i in store.list()] == sorted(expected)


def test_large_artifacts_stream_in_bounded_chunks(backend, tmp_path):
    store = backend.store
    mib = 1 << 20
    blocks = [bytes([n]) * mib for n in range(12)]  # 12 MiB: multipart on S3 with 5 MiB parts
    info = store.put("ckpt/model.bin", iter(blocks))
    assert info.size == 12 * mib
    digest, sizes = hashlib.sha256(), []
    for chunk in store.iter_chunks("ckpt/model.bin"):
        digest.update(chunk)
        sizes.append(len(chunk))
    assert digest.hexdigest() == hashlib.sha256(b"".join(blocks)).hexdigest() == info.sha256
    assert len(sizes) > 1 and max(sizes) <= 2 * store.chunk_size
    dest = tmp_path / "out" / "model.bin"
    assert store.get("ckpt/model.bin", dest).sha256 == info.sha256
    assert dest.stat().st_size == 12 * mib


def test_tampered_bytes_fail_verification_and_leave_no_download(backend, tmp_path):
    store = backend.store
    store.put("d/eval.jsonl", b'{"a": 1}\n')
    backend.write("d/eval.jsonl", b'{"a": 2}\n')  # same size, different bytes
    with pytest.raises(ArtifactIntegrityError, match="recorded"):
        store.read_bytes("d/eval.jsonl")
    dest = tmp_path / "eval.jsonl"
    dest.write_bytes(b"previous")
    with pytest.raises(ArtifactIntegrityError):
        store.get("d/eval.jsonl", dest)
    assert dest.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    backend.write("d/eval.jsonl", b"short")
    with pytest.raises(ArtifactIntegrityError):
        list(store.iter_chunks("d/eval.jsonl"))


def test_a_failed_write_leaves_nothing_visible(backend):
    store = backend.store
    store.put("run/preds.jsonl", b"old")

    def broken():
        yield b"x" * (6 << 20)
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError, match="source died"):
        store.put("run/new.bin", broken())
    with pytest.raises(RuntimeError, match="source died"):
        store.put("run/preds.jsonl", broken())
    assert not store.exists("run/new.bin")
    assert "run/new.bin" not in backend.names()
    assert store.read_bytes("run/preds.jsonl") == b"old"  # the committed version is intact
    backend.write("run/orphan.bin", b"data without a checksum")  # a crash between data and checksum
    assert not store.exists("run/orphan.bin")
    assert [i.key for i in store.list("run")] == ["run/preds.jsonl"]


def test_exists_delete_and_missing(backend):
    store = backend.store
    store.put("x/y.bin", b"1")
    assert store.exists("x/y.bin")
    assert store.delete("x/y.bin") is True
    assert store.delete("x/y.bin") is False
    assert not store.exists("x/y.bin")
    assert backend.names() == set()
    with pytest.raises(ArtifactNotFoundError):
        store.read_bytes("x/y.bin")
    with pytest.raises(FileNotFoundError):
        store.stat("nothing/here")
    assert list(store.list("x")) == []


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "a//b", "a/./b", "", "a/b.sha256", "a\\b",
                                 "s3://other-bucket/x", "file:///elsewhere/x"])
def test_keys_must_resolve_under_the_root(tmp_path, key):
    store = open_artifact_store(load_settings(environ={}, overrides={"artifacts": {"root": tmp_path.as_uri()}}))
    with pytest.raises(ArtifactKeyError):
        store.put(key, b"x")


def test_default_root_is_absolute_under_data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={}, overrides={"platform": {"data_dir": "rel/dir"}})
    assert artifact_root(settings) == (tmp_path / "rel/dir/artifacts").as_uri()
    store = open_artifact_store(settings)
    store.put("k", b"v")
    assert (tmp_path / "rel/dir/artifacts/k").read_bytes() == b"v"


@pytest.mark.parametrize("overrides,needle", [
    ({"root": "gs://bucket/x"}, r"artifacts\.root.*file:// or s3://"),
    ({"root": "file://relative/dir"}, r"artifacts\.root.*absolute"),
    ({"root": "s3:///nobucket"}, r"artifacts\.root.*bucket"),
    ({"chunk_size_mib": 1}, r"artifacts\.chunk_size_mib"),
    ({"s3": {"endpoint_url": "minio:9000"}}, r"artifacts\.s3\.endpoint_url"),
    ({"s3": {"access_key_id_env": "K"}}, r"artifacts\.s3.*go together"),
    ({"s3": {"access_key_id_env": "bad name", "secret_access_key_env": "S"}}, r"artifacts\.s3\.access_key_id_env"),
])
def test_config_is_validated_naming_the_field(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_settings(environ={}, overrides={"artifacts": overrides})


def test_s3_credentials_come_from_env_names(s3_endpoint):
    settings = load_settings(environ={}, overrides=_s3_settings(s3_endpoint, "any-bucket"))
    with pytest.raises(ConfigError, match=r"artifacts\.s3\.access_key_id_env.*TEST_S3_KEY"):
        open_artifact_store(settings, environ={})
