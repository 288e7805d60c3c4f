"""Results of a finished run: confidence intervals per score, cost per 1k requests and the promotion
gate (flywheel.gate) over every candidate configuration. Pure: a document in, a new document out.

An ``embedding_job``'s evaluations arrive with their own intervals (bootstrap over queries: nDCG and MRR
are not 0/1 per query), which are kept; its gate reads ``embedding_config.gate_metric`` against the
candidate's own base model (the production retriever's logged scores are optimistic by construction, see
docs/retrieval.md), so a fine-tuned retriever qualifies when it is no worse than what it started from.
"""

from __future__ import annotations

from flywheel.config import Settings
from flywheel.gate_inputs import apply_gate
from flywheel.jobdoc import JobDocument
from flywheel.stats import confidence_interval, cost_per_1k_requests, gate_verdict
from flywheel.vocabulary import EvalType, JobType


def aggregate(doc: JobDocument, settings: Settings) -> JobDocument:
    """Confidence intervals per score, cost per 1k requests and the promotion gate (pure).

    The reference is the production model, whose answers are the ground truth (agreement 1.0): the
    gate asks whether each candidate configuration is non-inferior to it within the configured margin.
    """
    doc = doc.model_copy(deep=True)
    if doc.job_type == JobType.embedding:
        return _aggregate_retrieval(doc, settings)
    prices = {n.model_name: n.cost_per_1k_tokens for n in settings.nims}
    for nim in doc.nims:
        costed = nim.evaluation(EvalType.base) or next(iter(nim.evaluations), None)
        if costed is not None and not costed.error and costed.num_records and nim.model_name in prices:
            nim.cost_per_1k_requests = cost_per_1k_requests(
                int(getattr(costed, "prompt_tokens", 0) or 0), int(getattr(costed, "completion_tokens", 0) or 0),
                costed.num_records, prices[nim.model_name])
        for ev in nim.evaluations:
            n = ev.num_records or 0
            if ev.error or n <= 0:
                continue
            cis: dict[str, list[float]] = {}
            for metric, score in ev.scores.items():
                if score is None:
                    continue
                # Wilson needs only the mean and the count (scores are per-record 0/1).
                hits = round(float(score) * n)
                lo, hi = confidence_interval([1.0] * hits + [0.0] * (n - hits))
                cis[metric] = [round(lo, 4), round(hi, 4)]
            ev.confidence_intervals = cis
    return apply_gate(doc, settings)


def _aggregate_retrieval(doc: JobDocument, settings: Settings) -> JobDocument:
    metric = settings.embedding_config.gate_metric
    gate = settings.gate.model_copy(update={"metric": metric})
    for nim in doc.nims:
        scored = [ev for ev in nim.evaluations if not ev.error and ev.scores.get(metric) is not None]
        if not scored:
            nim.gate = {"passed": False, "reasons": ["no successful evaluation"], "eval_type": None}
            continue
        best = max(scored, key=lambda ev: ev.scores[metric])
        base = nim.evaluation(EvalType.base)
        reference = base.scores.get(metric) if base is not None and not base.error else None
        verdict = gate_verdict(best.scores, reference, gate)
        nim.gate = {**verdict, "eval_type": best.eval_type, "metric": metric, "score": best.scores[metric]}
        if reference is not None:
            nim.gate["reference_score"] = reference
    return doc
