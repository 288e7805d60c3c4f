"""Atomic checkpoints: save, newest-complete selection, damage handling, retention (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flywheel.platforms.local import checkpoints as ck


def _writers(payload: bytes = b"weights") -> dict:
    return {
        "adapter.safetensors": lambda p: p.write_bytes(payload),
        "optimizer.pt": lambda p: p.write_bytes(b"opt" * 10),
    }


def _save(root: Path, step: int, keep: int = 2, **state) -> ck.Checkpoint:
    return ck.save(root, step, {"epoch": 0, **state}, _writers(f"w{step}".encode()), keep=keep)


def test_save_is_complete_and_named_by_step(tmp_path: Path) -> None:
    saved = _save(tmp_path, 3, loss=[1.0, 0.5])
    assert saved.path == tmp_path / "step-000003"
    assert sorted(p.name for p in saved.path.iterdir()) == [
        "COMPLETE", "adapter.safetensors", "optimizer.pt", "state.json"]
    manifest = json.loads((saved.path / "COMPLETE").read_text())
    assert set(manifest["files"]) == {"adapter.safetensors", "optimizer.pt", "state.json"}
    assert not list(tmp_path.glob("*.tmp"))
    newest = ck.find_newest(tmp_path)
    assert newest is not None and newest.step == 3
    assert newest.state == {"epoch": 0, "loss": [1.0, 0.5], "step": 3}
    assert newest.uri == str((tmp_path / "step-000003").resolve())


def test_empty_or_missing_root(tmp_path: Path) -> None:
    assert ck.find_newest(tmp_path / "nope") is None
    assert ck.find_newest(tmp_path) is None
    assert ck.prune(tmp_path / "nope") == []


def test_newest_ignores_tmp_and_incomplete_dirs(tmp_path: Path) -> None:
    _save(tmp_path, 2)
    # A crash mid-write leaves a .tmp dir (even one with a manifest): never selected.
    tmp = tmp_path / "step-000004.tmp"
    tmp.mkdir()
    (tmp / "state.json").write_text(json.dumps({"step": 4}))
    (tmp / "COMPLETE").write_text(json.dumps({"files": {"state.json": {"size": 11}}}))
    # A step dir without a manifest (e.g. copied by hand, interrupted) is not complete.
    bare = tmp_path / "step-000005"
    bare.mkdir()
    (bare / "state.json").write_text(json.dumps({"step": 5}))
    # Unrelated names are ignored.
    (tmp_path / "notes").mkdir()
    assert [c.step for c in ck.list_complete(tmp_path)] == [2]
    assert ck.find_newest(tmp_path).step == 2


def test_truncated_file_is_skipped_by_size(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    second = _save(tmp_path, 2)
    (second.path / "optimizer.pt").write_bytes(b"short")
    assert ck.find_newest(tmp_path, verify=False).step == 1


def test_corrupt_content_is_skipped_by_hash(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    second = _save(tmp_path, 2)
    target = second.path / "adapter.safetensors"
    target.write_bytes(b"X" * target.stat().st_size)  # same size, different bytes
    assert ck.find_newest(tmp_path, verify=False).step == 2  # size check alone cannot see it
    assert ck.find_newest(tmp_path, verify=True).step == 1


def test_state_step_mismatch_and_bad_json(tmp_path: Path) -> None:
    saved = _save(tmp_path, 7)
    # Renaming a checkpoint dir makes its state disagree with its name.
    saved.path.rename(tmp_path / "step-000008")
    assert ck.find_newest(tmp_path) is None
    other = _save(tmp_path, 9)
    (other.path / "COMPLETE").write_text("{not json")
    assert ck.find_newest(tmp_path) is None


def test_retention_keeps_last_two_and_clears_leftovers(tmp_path: Path) -> None:
    (tmp_path / "step-000001.tmp").mkdir()
    for step in (1, 2, 3, 4):
        _save(tmp_path, step)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["step-000003", "step-000004"]
    _save(tmp_path, 5, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000003", "step-000004", "step-000005"]


def test_resave_same_step_is_noop(tmp_path: Path) -> None:
    first = _save(tmp_path, 6, loss=[1.0])
    again = ck.save(tmp_path, 6, {"loss": [9.9]}, _writers(b"other"))
    assert again.path == first.path
    assert again.state["loss"] == [1.0]


def test_writer_failure_leaves_previous_checkpoint(tmp_path: Path) -> None:
    _save(tmp_path, 1)

    def boom(path: Path) -> None:
        path.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ck.save(tmp_path, 2, {}, {"adapter.safetensors": boom})
    assert ck.find_newest(tmp_path).step == 1
    assert (tmp_path / "step-000002.tmp").exists()  # left for the next save/prune to clear
    _save(tmp_path, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000001", "step-000003"]


def test_reserved_names_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ck.save(tmp_path, 1, {}, {"COMPLETE": lambda p: p.write_text("x")})
