"""Gate inputs from a job document: per-record files when readable, means × counts otherwise."""

from __future__ import annotations

import json

import pytest

from flywheel.config import Settings
from flywheel.gate_inputs import apply_gate, arms_for, gate_report, reference_for
from flywheel.jobdoc import EvaluationDoc, JobDocument, NimDoc
from flywheel.scoring import record_scores_path

METRIC = "function_name_and_args_accuracy"


def _write_scores(tmp_path, name: str, values: list[float | None]) -> str:
    predictions = tmp_path / f"{name}.jsonl"
    predictions.write_text("")
    lines = [json.dumps({"record_id": f"r{i}", METRIC: v, "function_name": 1.0}) for i, v in enumerate(values)]
    record_scores_path(predictions).write_text("\n".join(lines) + "\n")
    return str(predictions)


def _doc(tmp_path) -> JobDocument:
    base = _write_scores(tmp_path, "small-base", [1.0] * 95 + [0.0] * 3 + [None] * 2)
    icl = _write_scores(tmp_path, "small-icl", [1.0] * 99 + [0.0])
    return JobDocument(id="j", workload_id="w", client_id="c", nims=[
        NimDoc(model_name="small", evaluations=[
            EvaluationDoc(eval_type="base-eval", num_records=100, scores={METRIC: 95 / 98}, predictions_uri=base,
                          latency_p95_ms=300, prompt_tokens=40_000, completion_tokens=10_000),
            EvaluationDoc(eval_type="icl-eval", num_records=100, scores={METRIC: 0.99}, predictions_uri=icl,
                          latency_p95_ms=500, prompt_tokens=190_000, completion_tokens=10_000),
        ]),
        NimDoc(model_name="remote", evaluations=[
            EvaluationDoc(eval_type="base-eval", num_records=100, scores={METRIC: 0.9},
                          predictions_uri="https://nemo/v1/evaluation/jobs/x", latency_p95_ms=200),
            EvaluationDoc(eval_type="icl-eval", error="boom"),
        ]),
    ])


def test_arms_use_per_record_scores_when_readable_and_means_otherwise(tmp_path):
    settings = Settings(nims=[{"model_name": "small", "cost_per_1k_tokens": 0.01}, {"model_name": "remote"}])
    arms = {a.key: a for a in arms_for(_doc(tmp_path), settings)}
    assert set(arms) == {"small/base-eval", "small/icl-eval", "remote/base-eval"}
    base = arms["small/base-eval"]
    assert (base.successes, base.n) == (95, 98)  # the two undefined records are left out, as in the mean
    assert base.tokens_per_request == 500 and base.cost_per_1k_requests == pytest.approx(5.0)
    assert arms["small/icl-eval"].cost_per_1k_requests == pytest.approx(20.0)  # ICL prompts priced as sent
    remote = arms["remote/base-eval"]
    assert remote.outcomes is None and (remote.successes, remote.n) == (pytest.approx(90), 100)
    assert remote.tokens_per_request is None


def test_report_from_document_prices_the_reference_on_base_prompts(tmp_path):
    settings = Settings(nims=[{"model_name": "small", "cost_per_1k_tokens": 0.01}, {"model_name": "remote"}],
                        gate={"reference": {"cost_per_1k_tokens": 0.02}, "max_cost_ratio": 1.0})
    doc = _doc(tmp_path)
    assert reference_for(doc, settings).cost_per_1k_requests == pytest.approx(10.0)
    report = gate_report(doc, settings)
    verdicts = {v.key: v for v in report.verdicts}
    assert verdicts["small/icl-eval"].verdict == "fail"  # agreement fine, but 2x the reference's cost
    assert "cost" in verdicts["small/icl-eval"].reason
    assert [(p.a, p.b) for p in report.paired] == [("small/base-eval", "small/icl-eval")]
    assert report.paired[0].n_paired == 98


def test_apply_gate_fills_the_document_and_each_candidate(tmp_path):
    from flywheel.report import results_rows

    settings = Settings(nims=[{"model_name": "small", "cost_per_1k_tokens": 0.01}, {"model_name": "remote"}])
    doc = _doc(tmp_path)
    gated = apply_gate(doc, settings)
    assert doc.gate is None and gated.gate["metric"] == METRIC  # the input is not modified
    assert {v["model_name"] for v in gated.gate["verdicts"]} == {"small", "remote"}
    small = gated.nim("small").gate
    assert small["verdict"] in ("pass", "inconclusive", "fail") and small["reasons"][0].startswith("small/")
    assert gated.nim("remote").gate["verdict"] == "fail"  # 0.90 on 100 records: entirely below 0.95
    rows = {(r["model_name"], r["eval_type"]): r for r in results_rows(gated)}
    assert rows[("small", "icl-eval")]["cost_per_1k_requests"] == pytest.approx(20.0)  # priced per eval type
    assert rows[("small", "base-eval")]["cost_per_1k_requests"] == pytest.approx(5.0)
