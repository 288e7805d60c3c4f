"""The local platform's datasets: JSONL files published to the artifact store. The code lives in
:mod:`flywheel.artifacts.datasets` (every platform stores an ``embedding_job``'s datasets there);
this module keeps the local platform's names."""

from flywheel.artifacts.datasets import (  # noqa: F401 - re-exported
    _check_name,
    dataset_path,
    put_split,
    put_splits,
    read_rows,
    read_split,
    split_key,
    uri_to_path,
    write_split,
    write_splits,
)
