from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

import pytest
from rich.console import Console

from flywheel.jobdoc import CustomizationDoc, DatasetDoc, EvaluationDoc, JobDocument, NimDoc, RunStatus, Stage
from flywheel.report import render_html, render_table, results_rows, write_report

T = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def evaluation(eval_type: str, acc: float, p50: float, **extra) -> EvaluationDoc:
    return EvaluationDoc(
        eval_type=eval_type,
        scores={"function_name": min(1.0, acc + 0.1), "function_name_and_args_accuracy": acc},
        confidence_intervals={"function_name_and_args_accuracy": [acc - 0.1, min(1.0, acc + 0.1)]},
        latency_p50_ms=p50, latency_p95_ms=p50 * 2, num_records=40, started_at=T, finished_at=T, progress=100,
        **extra,
    )


def sample_doc() -> JobDocument:
    qwen = NimDoc(
        model_name="qwen-0.5b",
        evaluations=[evaluation("base-eval", 0.82, 410.0), evaluation("icl-eval", 0.9, 650.0)],
        cost_per_1k_requests=1.8,
        gate={"passed": True, "eval_type": "icl-eval", "reasons": ["within 0.05 of the reference"]},
    )
    gemma = NimDoc(
        model_name="gemma-270m",
        evaluations=[
            evaluation("base-eval", 0.1, 120.0),
            evaluation("icl-eval", 0.4, 300.0),
            EvaluationDoc(eval_type="customized-eval", error="endpoint <b>exploded</b>"),
        ],
        customizations=[CustomizationDoc(started_at=T, finished_at=T, progress=100, customized_model="g-lora")],
        cost_per_1k_requests=0.6,
        gate={"passed": False, "eval_type": "icl-eval", "reasons": ["too far below the reference"]},
    )
    smol = NimDoc(
        model_name="smol-135m",
        evaluations=[evaluation("base-eval", 0.05, 80.0)],
        customizations=[CustomizationDoc(error="NotEnoughResources: no GPU")],
    )
    return JobDocument(
        id="a" * 24, workload_id="primary_assistant", client_id="aiva-1", status=RunStatus.completed,
        stage=Stage.promoted, started_at=T, finished_at=T, num_records=500,
        nims=[qwen, gemma, smol],
        datasets=[DatasetDoc(name="eval", num_records=40, nmp_uri="file:///d/eval.jsonl"),
                  DatasetDoc(name="train", num_records=380)],
        curation={"kept": 460, "dropped": {"no_tool_call": 25, "duplicate": 15}},
        manifest_hash="sha256:deadbeefcafe",
        review={"decision": "promoted", "model_name": "qwen-0.5b", "by": "ana"},
    )


def test_results_rows_cover_every_model_and_eval_type():
    rows = results_rows(sample_doc())
    assert len(rows) == 9
    base = next(r for r in rows if r["model_name"] == "qwen-0.5b" and r["eval_type"] == "base-eval")
    assert base["function_name_and_args_accuracy"] == 0.82
    assert base["function_name_and_args_accuracy_ci"] == pytest.approx([0.72, 0.92])
    assert base["latency_p50_ms"] == 410.0 and base["latency_p95_ms"] == 820.0
    assert base["cost_per_1k_requests"] == 1.8 and base["note"] is None
    icl = next(r for r in rows if r["model_name"] == "qwen-0.5b" and r["eval_type"] == "icl-eval")
    assert icl["gate"] == "pass" and base["gate"] is None  # the verdict sits on the row it was judged on


def test_missing_customized_eval_says_why():
    notes = {r["model_name"]: r["note"] for r in results_rows(sample_doc()) if r["eval_type"] == "customized-eval"}
    assert notes["qwen-0.5b"] == "n/a (not customizable)"
    assert notes["gemma-270m"] == "failed: endpoint <b>exploded</b>"
    assert notes["smol-135m"] == "customization failed: NotEnoughResources: no GPU"


def test_render_table_has_customized_column_with_reasons():
    table = render_table(sample_doc())
    headers = [c.header for c in table.columns]
    assert "customized-eval" in headers
    console = Console(record=True, width=220)
    console.print(table)
    text = console.export_text()
    assert "n/a (not customizable)" in text and "NotEnoughResources" in text
    assert "qwen-0.5b" in text and "0.820" in text and "pass" in text and "fail" in text


def test_write_report_html_and_json(tmp_path):
    doc = sample_doc()
    page = write_report(doc, tmp_path / "out")
    assert page == tmp_path / "out" / "report.html"
    html = page.read_text()
    assert html.count('class="result-row"') == 9
    assert 'data-model="qwen-0.5b" data-eval-type="icl-eval"' in html
    assert "0.900 [0.80, 1.00]" in html and "650 ms" in html
    assert "n/a (not customizable)" in html
    assert "endpoint &lt;b&gt;exploded&lt;/b&gt;" in html  # document text is escaped
    assert "sha256:deadbeefcafe" in html and "dropped.no_tool_call" in html and "promoted" in html
    assert "380" in html  # dataset counts
    match = re.search(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert match, "embedded plot missing"
    assert base64.b64decode(match.group(1)).startswith(b"\x89PNG")
    assert "http://" not in html and "https://" not in html  # self-contained
    assert JobDocument.model_validate(json.loads((tmp_path / "out" / "job.json").read_text())) == doc


def test_report_for_a_job_without_results():
    doc = JobDocument(id="b" * 24, workload_id="w", client_id="c", status=RunStatus.running,
                      nims=[NimDoc(model_name="m")])
    html = render_html(doc)
    assert "data:image/png;base64," in html and "No datasets yet" in html
    rows = results_rows(doc)
    assert [r["note"] for r in rows] == ["not run", "not run", "n/a (not customizable)"]


def test_report_shows_the_gate_verdicts_reasons_recommendation_and_paired_tests():
    from flywheel.config import GateConfig
    from flywheel.gate import Arm, Reference, candidate_summary, evaluate_gate

    doc = sample_doc()
    ids = [f"r{i}" for i in range(40)]
    arms = [Arm(model_name="qwen-0.5b", eval_type="base-eval", successes=33, n=40, tokens_per_request=300,
                cost_per_1k_tokens=0.006, latency_p95_ms=820, outcomes={r: float(i >= 7) for i, r in enumerate(ids)}),
            Arm(model_name="qwen-0.5b", eval_type="icl-eval", successes=40, n=40, tokens_per_request=900,
                cost_per_1k_tokens=0.006, latency_p95_ms=1300, outcomes={r: 1.0 for r in ids})]
    report = evaluate_gate(arms, Reference(model_name="prod"), GateConfig())
    doc.gate = report.model_dump(mode="json")
    doc.nims[0].gate = candidate_summary(report, "qwen-0.5b")
    html = render_html(doc)
    assert 'data-verdict="fail"' in html and 'data-verdict="inconclusive"' in html
    assert "qwen-0.5b/icl-eval is inconclusive" in html and "records at this agreement would decide" in html
    assert 'id="paired"' in html and "exact McNemar" in html
    assert "No configuration passes yet" in html
    rows = {(r["model_name"], r["eval_type"]): r for r in results_rows(doc)}
    assert rows[("qwen-0.5b", "icl-eval")]["gate"] == "inconclusive"
    assert rows[("qwen-0.5b", "base-eval")]["gate"] == "fail"
    assert rows[("gemma-270m", "icl-eval")]["gate"] is None  # the gate report did not judge it
    console = Console(record=True, width=200)
    console.print(render_table(doc))
    text = console.export_text()
    assert "inconclusive" in text and "No configuration passes yet" in text


def test_gate_table_lists_every_configuration_with_its_reason():
    from flywheel.config import GateConfig
    from flywheel.gate import Arm, Reference, evaluate_gate
    from flywheel.report import gate_table

    doc = sample_doc()
    doc.gate = evaluate_gate([Arm(model_name="qwen-0.5b", eval_type="base-eval", successes=19, n=20),
                              Arm(model_name="qwen-0.5b", eval_type="icl-eval", successes=12, n=20)],
                             Reference(model_name="prod"), GateConfig()).model_dump(mode="json")
    console = Console(record=True, width=250)
    console.print(gate_table(doc))
    text = console.export_text()
    assert "qwen-0.5b / base-eval" in text and "inconclusive" in text and "fail" in text
    assert "floor 0.950 at 95%" in text and "No configuration passes yet" in text


def test_the_judge_column_shows_correctness_or_the_similarity_on_its_scale():
    tools = evaluation("base-eval", 0.5, 100.0)
    tools.scores["tool_calling_correctness"] = 0.625
    generic = EvaluationDoc(eval_type="base-eval", scores={"function_name": None, "similarity": 7.25,
                                                           "tool_calling_correctness": None},
                            num_records=4, started_at=T, finished_at=T, progress=100)
    doc = JobDocument(id="b" * 24, workload_id="w", client_id="c", status=RunStatus.completed,
                      nims=[NimDoc(model_name="tools-m", evaluations=[tools]),
                            NimDoc(model_name="chat-m", evaluations=[generic])])
    html = render_html(doc)

    def judge_cell(model: str) -> str:
        row = re.search(rf'data-model="{model}" data-eval-type="base-eval">(.*?)</tr>', html, re.S).group(1)
        return re.findall(r'<td class="num">([^<]*)</td>', row)[3]  # n, function_name, name+args, judge

    assert judge_cell("tools-m") == "0.625"
    assert judge_cell("chat-m") == "7.250/10"
