"""Results of a finished run: confidence intervals per score, cost per 1k requests and the promotion
gate (flywheel.gate) over every candidate configuration. Pure: a document in, a new document out.

An ``embedding_job``'s evaluations arrive with their own intervals (bootstrap over queries: nDCG and MRR
are not 0/1 per query), which are kept; its gate is the same, on ``embedding_config.gate_metric``, with the
production retriever (scored on the rankings it logged) as the reference.
"""

from __future__ import annotations

from flywheel.config import Settings
from flywheel.gate import Arm, Reference, candidate_summary, evaluate_gate
from flywheel.gate_inputs import ScoresReader, apply_gate
from flywheel.jobdoc import JobDocument
from flywheel.retrieval.evaluate import PRODUCTION_SCORES
from flywheel.stats import confidence_interval, cost_per_1k_requests
from flywheel.vocabulary import EvalType, JobType


def aggregate(doc: JobDocument, settings: Settings, read_scores: ScoresReader | None = None) -> JobDocument:
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
    return apply_gate(doc, settings, read_scores)


def _aggregate_retrieval(doc: JobDocument, settings: Settings) -> JobDocument:
    """The same gate as an llm_job's (flywheel.gate), on ``embedding_config.gate_metric``.

    The reference is the production retriever scored on the rankings it logged (``curation.production_scores``,
    written when the data was prepared): a configuration passes when the lower bound of its interval clears
    the production retriever's own score minus the margin. Per-query scores stay with the platform, so the
    arms are built from the mean and the query count (a graded metric's Wilson interval is conservative).
    """
    metric = settings.embedding_config.gate_metric
    gate = settings.gate.model_copy(update={"metric": metric})
    production = (doc.curation.get(PRODUCTION_SCORES) or {}).get(metric)
    reference = Reference(model_name="production retriever (logged rankings)",
                          agreement=min(1.0, float(production)) if production is not None else 1.0)
    arms = [Arm(model_name=nim.model_name, eval_type=ev.eval_type, successes=float(ev.scores[metric]) * ev.num_records,
                n=ev.num_records, latency_p95_ms=ev.latency_p95_ms)
            for nim in doc.nims for ev in nim.evaluations
            if not ev.error and ev.num_records and ev.scores.get(metric) is not None]
    report = evaluate_gate(arms, reference, gate)
    doc.gate = report.model_dump(mode="json")
    known = {e.value: e for e in EvalType}
    for nim in doc.nims:
        summary = candidate_summary(report, nim.model_name)
        summary["eval_type"] = known.get(summary["eval_type"], summary["eval_type"])
        nim.gate = {**summary, "reference_score": production}
    return doc
