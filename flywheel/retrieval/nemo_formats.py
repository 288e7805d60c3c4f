"""What NeMo's retriever jobs read and report, translated from and to our retrieval datasets and metrics.

* **BEIR files** for a retriever evaluation: ``corpus.jsonl`` (``{_id, title, text}``), ``queries.jsonl``
  (``{_id, text}``) and ``qrels/test.tsv`` (header ``query-id corpus-id score``, one line per
  (query, positive passage), score 1): built from the eval split and the corpus snapshot.
* **Customizer triplets**: ``{query, pos_doc, neg_doc[]}`` per line, nothing else (our mined triplets carry
  ids and counts for our own reports; the Customizer's schema does not know them).
* **Metric names**: NeMo's retriever metrics are pytrec_eval measures. ``recall_<k>`` and ``ndcg_cut_<k>``
  are our ``recall_at_k`` / ``ndcg_at_k`` (binary relevance, same definitions) for the cut-offs pytrec_eval
  computes; ``recip_rank`` over a pipeline that returns ``top_k`` passages is our ``mrr_at_<top_k>``.
  Production agreement needs the candidate's rankings, which the Evaluator does not return.

Pure: rows in, bytes or dicts out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flywheel.retrieval.metrics import METRIC_FAMILIES, metric_name

# The cut-offs pytrec_eval reports for recall and ndcg_cut by default.
PYTREC_CUTOFFS = (5, 10, 15, 20, 30, 100, 200, 500, 1000)
BEIR_CORPUS, BEIR_QUERIES, BEIR_QRELS = "corpus.jsonl", "queries.jsonl", "qrels/test.tsv"
# What the job document says instead of showing empty intervals.
AGGREGATE_ONLY = ("none: the NeMo Evaluator reports aggregate scores only (no per-query scores), so this "
                  "evaluation has no confidence intervals and no paired tests")


def _jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode()


def query_ids(eval_rows: Sequence[dict[str, Any]]) -> list[str]:
    """A unique id per eval row: its ``record_id`` when it has one, else its position."""
    ids, seen = [], set()
    for i, row in enumerate(eval_rows):
        qid = str(row.get("record_id") or f"q{i}")
        if qid in seen:
            qid = f"{qid}-{i}"
        seen.add(qid)
        ids.append(qid)
    return ids


def beir_files(eval_rows: Sequence[dict[str, Any]], corpus_rows: Sequence[dict[str, Any]]) -> dict[str, bytes]:
    """The BEIR test split of ``eval_rows`` over ``corpus_rows``; positives missing from the corpus are left
    out of the qrels (a query with none left is a ValueError: NeMo would reject the file)."""
    corpus_ids = {str(p["id"]) for p in corpus_rows}
    qids = query_ids(eval_rows)
    qrels = ["query-id\tcorpus-id\tscore"]
    for qid, row in zip(qids, eval_rows):
        positives = [str(p) for p in row["positive_ids"] if str(p) in corpus_ids]
        if not positives:
            raise ValueError(f"eval query {qid!r} has no positive passage in the corpus snapshot")
        qrels += [f"{qid}\t{pid}\t1" for pid in positives]
    return {
        BEIR_CORPUS: _jsonl({"_id": str(p["id"]), "title": "", "text": p["text"]} for p in corpus_rows),
        BEIR_QUERIES: _jsonl({"_id": qid, "text": row["query"]} for qid, row in zip(qids, eval_rows)),
        BEIR_QRELS: ("\n".join(qrels) + "\n").encode(),
    }


def customizer_triplets(triplets: Iterable[dict[str, Any]]) -> bytes:
    """Mined triplets as the Customizer's embedding training file."""
    return _jsonl({"query": t["query"], "pos_doc": t["pos_doc"], "neg_doc": list(t["neg_doc"])} for t in triplets)


def requested_metrics(ks: Sequence[int]) -> dict[str, str]:
    """NeMo retriever metric name -> our metric name, for what the Evaluator can compute at ``ks``.
    The pipeline's ``top_k`` must be ``max(ks)`` for ``recip_rank`` to mean ``mrr_at_<max k>``."""
    wanted: dict[str, str] = {}
    for k in sorted(set(ks)):
        if k in PYTREC_CUTOFFS:
            wanted[f"recall_{k}"] = metric_name("recall", k)
            wanted[f"ndcg_cut_{k}"] = metric_name("ndcg", k)
    wanted["recip_rank"] = metric_name("mrr", max(ks))
    return wanted


def missing_notes(ks: Sequence[int]) -> dict[str, str]:
    """Why some of our metrics have no value on the NeMo Evaluator path."""
    notes: dict[str, str] = {}
    for k in sorted(set(ks)):
        if k not in PYTREC_CUTOFFS:
            for family in ("recall", "ndcg"):
                notes[metric_name(family, k)] = (f"the NeMo Evaluator has no {family}@{k} (pytrec_eval cut-offs: "
                                                 f"{', '.join(map(str, PYTREC_CUTOFFS[:6]))}, ...)")
        if k != max(ks):
            notes[metric_name("mrr", k)] = (f"the NeMo Evaluator reports the reciprocal rank over the whole top "
                                            f"{max(ks)} only (mrr_at_{max(ks)})")
        notes[metric_name(METRIC_FAMILIES[3], k)] = ("the NeMo Evaluator does not return the candidate's rankings, "
                                                     "so agreement with the production retriever is not computed")
    return notes


def scores_from_results(result: Mapping[str, Any], ks: Sequence[int]) -> dict[str, float]:
    """``tasks.<task>.metrics.<metric>.scores.<score>.value`` -> our metric names. The metric key may carry a
    prefix (``retriever.recall_5``); the score name is the pytrec_eval measure."""
    wanted = requested_metrics(ks)
    out: dict[str, float] = {}
    for task in (result.get("tasks") or {}).values():
        for key, metric in ((task or {}).get("metrics") or {}).items():
            for score_name, score in ((metric or {}).get("scores") or {}).items():
                name = score_name if score_name in wanted else key.rsplit(".", 1)[-1]
                value = (score or {}).get("value")
                if name in wanted and value is not None:
                    out[wanted[name]] = float(value)
    return out
