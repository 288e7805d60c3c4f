import hashlib

import pytest

from flywheel.platforms.local import datasets
from flywheel.types import PlatformError

ROWS = [{"request": {"messages": [{"role": "user", "content": f"q{i} é"}]}, "i": i} for i in range(3)]


def test_write_and_read_round_trip(tmp_path):
    refs = datasets.write_splits(tmp_path, "run-1", {"eval": ROWS, "train": iter(ROWS[:2])})
    assert set(refs) == {"eval", "train"}
    ref = refs["eval"]
    path = tmp_path / "datasets" / "run-1" / "eval.jsonl"
    assert ref.uri == path.resolve().as_uri()
    assert ref.num_records == 3 and refs["train"].num_records == 2
    assert ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert datasets.read_rows(ref) == ROWS
    assert not list(path.parent.glob(".*tmp"))


def test_idempotent_rewrite_keeps_file(tmp_path):
    first = datasets.write_split(tmp_path, "run-1", "eval", ROWS)
    path = datasets.uri_to_path(first.uri)
    mtime = path.stat().st_mtime_ns
    again = datasets.write_split(tmp_path, "run-1", "eval", ROWS)
    assert again == first
    assert path.stat().st_mtime_ns == mtime


def test_changed_rows_replace_file(tmp_path):
    first = datasets.write_split(tmp_path, "run-1", "eval", ROWS)
    second = datasets.write_split(tmp_path, "run-1", "eval", ROWS[:1])
    assert second.sha256 != first.sha256 and datasets.read_rows(second) == ROWS[:1]


def test_empty_split(tmp_path):
    ref = datasets.write_split(tmp_path, "run-1", "val", [])
    assert ref.num_records == 0 and datasets.read_rows(ref) == []


def test_tampered_file_is_detected(tmp_path):
    ref = datasets.write_split(tmp_path, "run-1", "eval", ROWS)
    datasets.uri_to_path(ref.uri).write_text('{"x": 1}\n')
    with pytest.raises(PlatformError) as err:
        datasets.read_rows(ref)
    assert err.value.error_type == "DatasetIntegrityError" and not err.value.retryable


def test_missing_file_and_bad_names(tmp_path):
    ref = datasets.write_split(tmp_path, "run-1", "eval", ROWS)
    datasets.uri_to_path(ref.uri).unlink()
    with pytest.raises(PlatformError, match="not found"):
        datasets.read_rows(ref)
    for run_key, split in [("../escape", "eval"), ("run", "a/b"), ("", "eval")]:
        with pytest.raises(PlatformError, match="invalid dataset"):
            datasets.write_split(tmp_path, run_key, split, ROWS)
    with pytest.raises(PlatformError, match="file://"):
        datasets.uri_to_path("s3://bucket/x.jsonl")


async def test_platform_put_and_read(tmp_path):
    from flywheel.config import Settings
    from flywheel.platforms.local import LocalPlatform

    platform = LocalPlatform(Settings.model_validate({"platform": {"data_dir": str(tmp_path)}}))
    refs = await platform.put_datasets("job-7", {"eval": ROWS})
    assert await platform.read_dataset(refs["eval"]) == ROWS
