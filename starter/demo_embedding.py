"""`flywheel demo --job-type embedding_job`: the retrieval flywheel on the shipped knowledge-base sample.

The retrieval logs (``data/primary_assistant-aiva-kb.jsonl``) go into the log store; the help centre's
corpus export is handed to every stack process through ``FLYWHEEL__EMBEDDING_CONFIG__CORPUS_PATH``; the
job scores the bundled all-MiniLM-L6-v2, fine-tunes it on mined triplets and scores the fine-tuned model
served by the local embeddings server. The table shows base vs customized with bootstrap intervals.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from rich.table import Table

from flywheel.jobdoc import JobDocument
from flywheel.vocabulary import EvalType
from starter.stack import REPO_ROOT

CLIENT_ID = "aiva-kb"
DATA_DIR = REPO_ROOT / "data"
CORPUS_FILE = DATA_DIR / f"primary_assistant-{CLIENT_ID}-corpus.jsonl"
METRICS = ("recall_at_5", "ndcg_at_10", "mrr_at_10", "production_agreement_at_10")
# All the sample's queries (the demo profile caps extraction at 300) and an eval split large enough for
# intervals of about ±0.05.
SPLIT = {"limit": 10_000, "eval_size": 150, "min_total_records": 50}


def ensure_sample() -> None:
    """The sample is shipped; regenerate it (seeded, identical) if it was removed."""
    if not CORPUS_FILE.exists() or not (DATA_DIR / f"primary_assistant-{CLIENT_ID}.jsonl").exists():
        subprocess.run([sys.executable, str(DATA_DIR / "generate_retrieval_samples.py")], check=True, cwd=REPO_ROOT)


def stack_env() -> dict[str, str]:
    return {"FLYWHEEL__EMBEDDING_CONFIG__CORPUS_PATH": str(CORPUS_FILE.resolve())}


def _cell(doc: Any, metric: str) -> str:
    if doc is None:
        return "—"
    if doc.error:
        return f"failed: {doc.error[:60]}"
    value = doc.scores.get(metric)
    if value is None:
        return "—"
    lo, hi = doc.confidence_intervals.get(metric, [None, None])
    return f"{value:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")


def retrieval_table(doc: JobDocument) -> Table:
    """Candidate × base / customized: Recall@5, nDCG@10, MRR@10 and production agreement with 95% intervals."""
    table = Table(title="Retrieval quality on the eval split (95% bootstrap intervals over queries)")
    table.add_column("candidate", style="bold")
    table.add_column("eval")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    table.add_column("gate")
    verdicts = {(v["model_name"], v["eval_type"]): v["verdict"] for v in (doc.gate or {}).get("verdicts", [])}
    for nim in doc.nims:
        for eval_type in (EvalType.base, EvalType.customized):
            ev = nim.evaluation(eval_type)
            verdict = verdicts.get((nim.model_name, eval_type), "")
            table.add_row(nim.model_name, eval_type.removesuffix("-eval"), *(_cell(ev, m) for m in METRICS), verdict)
        for cust in nim.customizations:
            mining = getattr(cust, "mining", None) or {}
            training = getattr(cust, "training", None) or {}
            table.caption = (f"fine-tuning: {cust.steps_completed} steps, final loss {cust.loss}, "
                             f"{training.get('train_seconds')} s training; mining {mining.get('seconds')} s "
                             f"({(mining.get('train') or {}).get('triplets_with_negative_above')} triplets with a "
                             f"negative ranked above the positive)")
    return table
