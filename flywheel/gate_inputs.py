"""From a job document to the gate's inputs: one :class:`~flywheel.gate.Arm` per candidate × eval type.

Per-record scores (the judge's verdicts included) come from the file the evaluator writes beside its
predictions (``<predictions>.scores.jsonl``), read through ``read_scores`` (the activity passes one that
reads the artifact store, where the predictions live) or from a local path; then the gate also runs paired
tests. Otherwise (a remote platform's evaluation) the arm is built from the mean score and the record
count, and has no paired tests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flywheel.config import Settings
from flywheel.gate import Arm, GateReport, Reference, evaluate_gate, reference_from_config
from flywheel.jobdoc import EvaluationDoc, JobDocument
from flywheel.judge import similarity_unit
from flywheel.scoring import read_record_scores, record_scores_path
from flywheel.vocabulary import EvalType

SIMILARITY = "similarity"


def _local_path(uri: str | None) -> Path | None:
    if not uri or "://" in uri:
        return None
    path = Path(uri)
    return path if path.exists() else None


# predictions URI → its per-record scores keyed by record id ({} when there are none).
ScoresReader = Callable[[str], dict[str, dict[str, float | None]]]


def record_outcomes(ev: EvaluationDoc, metric: str, read_scores: ScoresReader | None = None) -> dict[str, float] | None:
    """Per-record scores of ``metric`` on [0, 1] keyed by record id (undefined ones left out); None if unavailable."""
    if read_scores is not None and ev.predictions_uri:
        rows = read_scores(ev.predictions_uri)
    elif (predictions := _local_path(ev.predictions_uri)) is not None:
        rows = read_record_scores(record_scores_path(predictions))
    else:
        return None
    values = {rid: scores.get(metric) for rid, scores in rows.items()}
    defined = {rid: _unit(metric, float(v)) for rid, v in values.items() if v is not None}
    return defined or None


def _unit(metric: str, value: float) -> float:
    """Scores on the gate's [0, 1] agreement scale (the judge's similarity is 1-10)."""
    return similarity_unit(value) if metric == SIMILARITY else value


def tokens_per_request(ev: EvaluationDoc) -> float | None:
    """Mean prompt + completion tokens the evaluation actually sent; None when usage was not reported."""
    extra: dict[str, Any] = ev.model_extra or {}
    tokens = int(extra.get("prompt_tokens") or 0) + int(extra.get("completion_tokens") or 0)
    return tokens / ev.num_records if tokens and ev.num_records else None


def arms_for(doc: JobDocument, settings: Settings, read_scores: ScoresReader | None = None) -> list[Arm]:
    metric = settings.gate.metric
    prices = {n.model_name: n.cost_per_1k_tokens for n in settings.nims}
    arms: list[Arm] = []
    for nim in doc.nims:
        for ev in nim.evaluations:
            if ev.error or not ev.num_records:
                continue
            outcomes = record_outcomes(ev, metric, read_scores)
            if outcomes is not None:
                successes, n = sum(outcomes.values()), len(outcomes)
            else:
                score = ev.scores.get(metric)
                if score is None:
                    successes, n = 0.0, 0
                else:
                    successes, n = _unit(metric, float(score)) * ev.num_records, ev.num_records
            arms.append(Arm(model_name=nim.model_name, eval_type=ev.eval_type, successes=successes, n=n,
                            latency_p95_ms=ev.latency_p95_ms, tokens_per_request=tokens_per_request(ev),
                            cost_per_1k_tokens=prices.get(nim.model_name), outcomes=outcomes))
    return arms


def reference_for(doc: JobDocument, settings: Settings) -> Reference:
    """The configured production model, priced on the base evaluation's prompts (the production prompts)."""
    base_tokens = [t for nim in doc.nims if (ev := nim.evaluation("base-eval")) is not None and not ev.error
                   and (t := tokens_per_request(ev)) is not None]
    tokens = sum(base_tokens) / len(base_tokens) if base_tokens else None
    return reference_from_config(settings.gate, tokens)


def gate_report(doc: JobDocument, settings: Settings, read_scores: ScoresReader | None = None) -> GateReport:
    return evaluate_gate(arms_for(doc, settings, read_scores), reference_for(doc, settings), settings.gate)


def apply_gate(doc: JobDocument, settings: Settings, read_scores: ScoresReader | None = None) -> JobDocument:
    """A copy of ``doc`` with the gate's report (``doc.gate``) and each candidate's best verdict (``nim.gate``)."""
    from flywheel.gate import candidate_summary

    doc = doc.model_copy(deep=True)
    report = gate_report(doc, settings, read_scores)
    doc.gate = report.model_dump(mode="json")
    known = {e.value: e for e in EvalType}
    for nim in doc.nims:
        summary = candidate_summary(report, nim.model_name)
        summary["eval_type"] = known.get(summary["eval_type"], summary["eval_type"])  # the document's enum
        nim.gate = summary
    return doc
