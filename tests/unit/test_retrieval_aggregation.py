"""Aggregation of an embedding_job: the evaluation's own bootstrap intervals are kept, and the same gate as an
llm_job reads embedding_config.gate_metric against the production retriever's own score on its logged rankings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flywheel.aggregation import aggregate
from flywheel.config import Settings
from flywheel.jobdoc import EvaluationDoc, JobDocument, NimDoc


def doc_with(base: float, customized: float, job_type: str = "embedding_job",
             production: float | None = 0.8) -> JobDocument:
    now = datetime.now(UTC)
    evs = [EvaluationDoc(eval_type=t, scores={"ndcg_at_10": v, "recall_at_5": v}, num_records=150, finished_at=now,
                         confidence_intervals={"ndcg_at_10": [v - 0.05, v + 0.04]})
           for t, v in (("base-eval", base), ("customized-eval", customized))]
    curation = {} if production is None else {"production_scores": {"ndcg_at_10": production, "recall_at_5": 1.0}}
    return JobDocument(id="j", workload_id="w", client_id="c", job_type=job_type, curation=curation,
                       nims=[NimDoc(model_name="all-MiniLM-L6-v2", evaluations=evs)])


def test_bootstrap_intervals_are_kept_and_the_gate_compares_with_the_production_retriever():
    out = aggregate(doc_with(0.71, 0.94), Settings())
    nim = out.nims[0]
    assert nim.evaluations[1].confidence_intervals == {"ndcg_at_10": [0.94 - 0.05, 0.94 + 0.04]}
    # Floor: production's own nDCG@10 0.80 minus the margin 0.05 = 0.75.
    assert out.gate["threshold"] == pytest.approx(0.75) and out.gate["reference"]["agreement"] == 0.8
    verdicts = {v["eval_type"]: v for v in out.gate["verdicts"]}
    assert verdicts["customized-eval"]["verdict"] == "pass"  # Wilson lower bound of 0.94 on 150 queries ~0.89
    assert verdicts["base-eval"]["verdict"] == "inconclusive"  # 0.71 on 150 queries straddles 0.75
    assert verdicts["base-eval"]["records_needed"] > 150
    assert nim.gate["passed"] and nim.gate["metric"] == "ndcg_at_10" and nim.gate["eval_type"] == "customized-eval"
    assert nim.gate["reference_score"] == 0.8
    assert out.gate["recommendation"] == "all-MiniLM-L6-v2/customized-eval"


def test_gate_fails_when_retrieval_is_clearly_below_production():
    settings = Settings(embedding_config={"gate_metric": "recall_at_5"})
    out = aggregate(doc_with(0.9, 0.5), settings)  # production's recall@5 on its own rankings is 1.0: floor 0.95
    verdicts = {v["eval_type"]: v["verdict"] for v in out.gate["verdicts"]}
    assert verdicts == {"base-eval": "fail", "customized-eval": "fail"}
    assert not out.nims[0].gate["passed"] and out.nims[0].gate["metric"] == "recall_at_5"
    assert out.gate["recommendation"] is None


def test_without_production_scores_the_reference_agrees_with_itself():
    out = aggregate(doc_with(0.71, 0.94, production=None), Settings())
    assert out.gate["threshold"] == pytest.approx(0.95) and out.nims[0].gate["reference_score"] is None


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
