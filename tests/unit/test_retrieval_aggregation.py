"""Aggregation of an embedding_job: the evaluation's own bootstrap intervals are kept, and the gate reads
embedding_config.gate_metric against the candidate's base model."""

from __future__ import annotations

from datetime import UTC, datetime

from flywheel.aggregation import aggregate
from flywheel.config import Settings
from flywheel.jobdoc import EvaluationDoc, JobDocument, NimDoc


def doc_with(base: float, customized: float, job_type: str = "embedding_job") -> JobDocument:
    now = datetime.now(UTC)
    evs = [EvaluationDoc(eval_type=t, scores={"ndcg_at_10": v, "recall_at_5": v}, num_records=150, finished_at=now,
                         confidence_intervals={"ndcg_at_10": [v - 0.05, v + 0.04]})
           for t, v in (("base-eval", base), ("customized-eval", customized))]
    return JobDocument(id="j", workload_id="w", client_id="c", job_type=job_type,
                       nims=[NimDoc(model_name="all-MiniLM-L6-v2", evaluations=evs)])


def test_bootstrap_intervals_are_kept_and_the_gate_compares_with_the_base_model():
    out = aggregate(doc_with(0.71, 0.94), Settings())
    nim = out.nims[0]
    assert nim.evaluations[1].confidence_intervals == {"ndcg_at_10": [0.94 - 0.05, 0.94 + 0.04]}
    assert nim.gate["passed"] and nim.gate["metric"] == "ndcg_at_10" and nim.gate["eval_type"] == "customized-eval"
    assert nim.gate["reference_score"] == 0.71


def test_gate_fails_when_fine_tuning_made_retrieval_worse():
    settings = Settings(embedding_config={"gate_metric": "recall_at_5"})
    nim = aggregate(doc_with(0.9, 0.5), settings).nims[0]
    assert nim.gate["eval_type"] == "base-eval" and nim.gate["metric"] == "recall_at_5"
    worse = aggregate(doc_with(0.9, 0.5), settings.model_copy(update={"gate": settings.gate.model_copy(
        update={"min_score": 0.95})})).nims[0]
    assert not worse.gate["passed"]


def test_llm_jobs_keep_wilson_intervals():
    out = aggregate(doc_with(0.5, 0.6, job_type="llm_job"), Settings())
    assert out.nims[0].evaluations[0].confidence_intervals["ndcg_at_10"] != [0.45, 0.54]


def test_report_table_shows_ranking_scores_and_says_icl_does_not_apply():
    from rich.console import Console

    from flywheel.report import render_table, results_rows

    doc = aggregate(doc_with(0.71, 0.94), Settings())
    doc.not_applicable = {"icl-eval": "in-context learning does not apply to embedding models"}
    rows = {r["eval_type"]: r for r in results_rows(doc)}
    assert rows["icl-eval"]["note"].startswith("n/a: in-context learning")
    assert rows["customized-eval"]["ndcg_at_10_ci"] == [0.94 - 0.05, 0.94 + 0.04]
    console = Console(width=200, record=True)
    console.print(render_table(doc))
    text = console.export_text()
    assert "nDCG@10 0.940 [0.89, 0.98]" in text and "Recall@5 0.710" in text
    assert "name+args" not in text
