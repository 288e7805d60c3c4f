"""The shipped retrieval sample (``data/primary_assistant-aiva-kb.jsonl``), cut small for fast tests."""

from __future__ import annotations

import itertools
import json
from typing import Any

from flywheel.config import CurationConfig, DataSplitConfig
from flywheel.ingest import load_jsonl
from flywheel.logstore import open_logstore
from flywheel.retrieval.prepare import PreparedRetrieval, prepare_retrieval_datasets
from tests.helpers import REPO_ROOT

KB_LOGS = REPO_ROOT / "data" / "primary_assistant-aiva-kb.jsonl"
KB_WORKLOAD, KB_CLIENT = "primary_assistant", "aiva-kb"


def kb_lines(n: int) -> list[str]:
    with KB_LOGS.open() as fh:
        return list(itertools.islice(fh, n))


def kb_prepared(n: int = 120, eval_size: int = 25) -> PreparedRetrieval:
    """Curated rows, corpus snapshot (the passages of these logs) and splits of the first ``n`` records."""
    records: list[dict[str, Any]] = [json.loads(line) for line in kb_lines(n)]
    return prepare_retrieval_datasets(records, DataSplitConfig(eval_size=eval_size, val_ratio=0.15,
                                                               min_total_records=20),
                                      CurationConfig(), inputs={"test": n})


def load_kb_logs(settings: Any, n: int) -> int:
    """Load the first ``n`` retrieval records into the settings' log store; returns how many were loaded."""
    with open_logstore(settings) as store:
        return load_jsonl(kb_lines(n), store, workload_id=KB_WORKLOAD, client_id=KB_CLIENT).loaded
