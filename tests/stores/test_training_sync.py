"""Checkpoints and adapters through the artifact store (moto S3 over HTTP): a training retry on another
host (another private work dir) resumes from the newest checkpoint one host published, or gets its result."""

from __future__ import annotations

import pytest

from flywheel.platforms.local import checkpoints as ckpts
from flywheel.platforms.local import work_sync
from flywheel.types import CustomizationResult
from tests.stores.cluster_settings import host_settings


@pytest.fixture
def store(tmp_path, s3_root):
    from flywheel.artifacts import open_artifact_store

    return open_artifact_store(host_settings(tmp_path, "a", s3_root, "10.0.0.1"))


def save(root, step: int):
    return ckpts.save(root, step, {"loss": [1.0 / step], "fingerprint": "fp"},
                      {"adapter.safetensors": lambda p: p.write_bytes(b"w" * step),
                       "optimizer.pt": lambda p: p.write_bytes(b"o" * step)}, keep=2)


def test_newest_checkpoint_resumes_on_another_host(tmp_path, store):
    host_a = tmp_path / "a" / "customizations" / "job-cand-customize"
    for step in (5, 10, 15):
        work_sync.push_checkpoint(store, "job-cand-customize", save(host_a / "checkpoints", step))
    assert work_sync.remote_steps(store, "job-cand-customize") == [10, 15]  # pruned like the local set
    # An upload cut off before its manifest is not a checkpoint.
    store.put("customizations/job-cand-customize/checkpoints/step-000020/adapter.safetensors", b"partial")
    assert work_sync.remote_steps(store, "job-cand-customize") == [10, 15]

    host_b = tmp_path / "b" / "customizations" / "job-cand-customize"
    pulled = work_sync.pull_newest_checkpoint(store, "job-cand-customize", host_b)
    assert pulled == host_b / "checkpoints" / "step-000015"
    newest = ckpts.find_newest(host_b / "checkpoints", verify=True)  # manifest sha256 sums hold
    assert newest.step == 15 and newest.state["fingerprint"] == "fp"
    assert (pulled / "adapter.safetensors").read_bytes() == b"w" * 15
    # A host that already has a checkpoint keeps its own.
    assert work_sync.pull_newest_checkpoint(store, "job-cand-customize", host_b) is None
    assert work_sync.pull_newest_checkpoint(store, "other-run", tmp_path / "c") is None


def test_finished_adapter_is_found_from_any_host(tmp_path, store):
    adapter = tmp_path / "a" / "adapter.gguf"
    adapter.parent.mkdir(parents=True)
    adapter.write_bytes(b"GGUF" + b"\0" * 100)
    result = CustomizationResult(customized_model="cand-ft", adapter_uri=str(adapter), steps_completed=2,
                                 epochs_completed=1, final_loss=0.5)
    assert work_sync.read_result(store, "job-cand-customize") is None
    shared = work_sync.push_result(store, "job-cand-customize", result)
    assert shared.adapter_uri == store.uri("customizations/job-cand-customize/adapter.gguf")
    again = work_sync.read_result(store, "job-cand-customize")
    assert again == shared
    local = work_sync.local_adapter(store, again.adapter_uri, tmp_path / "b" / "adapters")
    assert local.read_bytes() == adapter.read_bytes() and local.name == "adapter.gguf"
    # The adapter gone from the store: the result does not count (training runs again).
    store.delete("customizations/job-cand-customize/adapter.gguf")
    assert work_sync.read_result(store, "job-cand-customize") is None
