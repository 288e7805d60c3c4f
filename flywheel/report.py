"""Result tables, the HTML report page and its plot. Pure domain: reads a JobDocument, writes files.

``results_rows`` is the one place that turns a document into numbers per (candidate, eval type);
the rich table, the HTML page and the plot are views over it.
"""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from rich.table import Table
from rich.text import Text

from flywheel.jobdoc import EvaluationDoc, JobDocument, NimDoc, RunStatus
from flywheel.metrics import ACCURACY_METRIC, METRICS
from flywheel.vocabulary import ALL_EVAL_TYPES, EvalType

if TYPE_CHECKING:
    from flywheel.artifacts import ArtifactStore

EVAL_TYPES = ALL_EVAL_TYPES
ACCURACY = ACCURACY_METRIC
# Scores shown with their interval: the headline tool-call accuracy and the retrieval scores.
_CI_COLUMNS = (ACCURACY, *(m.name for m in METRICS if m.source == "retrieval"))
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
REPORT_TEMPLATE = "report.html.jinja"
VERDICT_STYLES = {"pass": "green", "fail": "red", "inconclusive": "yellow"}
NUMERIC_GATE_COLUMNS = ("n", "records needed", "cost / 1k req", "p95")


# ---------------------------------------------------------------------------------------------- rows


def _eval_types(doc: JobDocument) -> list[str]:
    seen = list(EVAL_TYPES)
    for nim in doc.nims:
        seen += [e.eval_type for e in nim.evaluations if e.eval_type not in seen]
    return seen


def _gate_entry(doc: JobDocument, nim: NimDoc, eval_type: str) -> dict[str, Any] | None:
    """The gate's verdict for (candidate, eval type) from the job's gate report, if there is one."""
    for verdict in (doc.gate or {}).get("verdicts", []):
        if verdict.get("model_name") == nim.model_name and verdict.get("eval_type") == eval_type:
            return verdict
    return None


def _gate_verdict(doc: JobDocument, nim: NimDoc, eval_type: str) -> str | None:
    """pass / fail / inconclusive for (candidate, eval type); None when no gate judged it.

    Documents from before the gate report carry one verdict per candidate (``nim.gate.passed``) on
    the row it was judged on.
    """
    if doc.gate is not None:
        entry = _gate_entry(doc, nim, eval_type)
        return entry.get("verdict") if entry else None
    gate = nim.gate or {}
    if "passed" not in gate:
        return None
    judged_on = gate.get("eval_type")
    if judged_on is not None and judged_on != eval_type:
        return None
    if judged_on is None and eval_type != EVAL_TYPES[0]:
        return None
    return "pass" if gate["passed"] else "fail"


def _row_cost(doc: JobDocument, nim: NimDoc, eval_type: str) -> float | None:
    entry = _gate_entry(doc, nim, eval_type) or {}
    cost = entry.get("cost_per_1k_requests")
    return cost if cost is not None else nim.cost_per_1k_requests


def candidate_verdict(nim: NimDoc) -> str | None:
    gate = nim.gate or {}
    if "verdict" in gate:
        return gate["verdict"]
    if "passed" in gate:
        return "pass" if gate["passed"] else "fail"
    return None


def missing_reason(doc: JobDocument, nim: NimDoc, eval_type: str) -> str:
    """Why there is no score for (candidate, eval type), in words."""
    ev = nim.evaluation(eval_type)
    if ev is not None and ev.error:
        return f"failed: {ev.error}"
    not_applicable = (getattr(doc, "not_applicable", None) or {}).get(eval_type)
    if ev is None and not_applicable:
        return f"n/a: {not_applicable}"
    if ev is not None and ev.score_notes:
        return "; ".join(f"{k}: {v}" for k, v in ev.score_notes.items())
    if eval_type == EvalType.customized:
        customization = nim.customizations[-1] if nim.customizations else None
        if customization is not None and customization.error:
            return f"customization failed: {customization.error}"
        if customization is None and not nim.error:
            return "n/a (not customizable)"
        if customization is not None and ev is None and not customization.finished_at:
            return f"customizing ({customization.progress:.0f}%)"
    if nim.error:
        return f"candidate failed: {nim.error}"
    if ev is not None and not ev.finished_at and not doc.status.finished:
        return f"running ({ev.progress:.0f}%)"
    if doc.status is RunStatus.cancelled:
        return "not run (job cancelled)"
    return "not run"


def _has_scores(ev: EvaluationDoc | None) -> bool:
    return ev is not None and not ev.error and any(v is not None for v in ev.scores.values())


def results_rows(doc: JobDocument) -> list[dict[str, Any]]:
    """One row per candidate × eval type: scores (± CI), latency p50/p95, cost per 1k requests, gate verdict.

    Rows without scores carry ``note`` saying why (not customizable, failed, cancelled, running...).
    """
    rows: list[dict[str, Any]] = []
    for nim in doc.nims:
        for eval_type in _eval_types(doc):
            ev = nim.evaluation(eval_type)
            if ev is None and eval_type not in EVAL_TYPES:
                continue
            scored = _has_scores(ev)
            scores = ev.scores if ev is not None else {}
            cis = ev.confidence_intervals if ev is not None else {}
            rows.append({
                "model_name": nim.model_name,
                "eval_type": eval_type,
                **{m.name: scores.get(m.name) for m in METRICS},
                **{f"{name}_ci": list(cis[name]) if name in cis else None for name in _CI_COLUMNS},
                "num_records": ev.num_records if ev is not None else None,
                "latency_p50_ms": ev.latency_p50_ms if ev is not None else None,
                "latency_p95_ms": ev.latency_p95_ms if ev is not None else None,
                # Priced per eval type when the gate priced it (ICL prompts are longer), else the candidate's.
                "cost_per_1k_requests": _row_cost(doc, nim, eval_type),
                "gate": _gate_verdict(doc, nim, eval_type),
                "gate_reason": (_gate_entry(doc, nim, eval_type) or {}).get("reason"),
                "note": None if scored else missing_reason(doc, nim, eval_type),
            })
    return rows


# ---------------------------------------------------------------------------------------------- formatting


def fmt_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def fmt_score_ci(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and len(ci) == 2 else f"{value:.3f}"


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def fmt_cost(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _cell_text(row: dict[str, Any]) -> str:
    if row["note"]:
        return row["note"]
    lines = []
    retrieval = any(row[m.name] is not None for m in METRICS if m.source == "retrieval")
    for metric in METRICS:  # tool-call scores always (— when missing); the judge and similarity when present
        value = row[metric.name]
        if not metric.shown or (metric.source != "record" and value is None):
            continue
        if retrieval and metric.source == "record":
            continue  # an embedding_job's row: ranking scores, no tool calls
        lines.append(f"{metric.label} {fmt_score_ci(value, row.get(f'{metric.name}_ci'))}")
    if retrieval:
        return "\n".join(lines)
    lines.append(f"p50 {fmt_ms(row['latency_p50_ms'])} · p95 {fmt_ms(row['latency_p95_ms'])}")
    return "\n".join(lines)


def render_table(doc: JobDocument) -> Table:
    """Candidates × eval types. Empty cells say why (e.g. customized-eval "n/a (not customizable)")."""
    table = Table(title=f"{doc.workload_id}/{doc.client_id} — job {doc.id} ({doc.status.value})", show_lines=True)
    table.add_column("model", style="bold")
    eval_types = _eval_types(doc)
    for eval_type in eval_types:
        table.add_column(eval_type)
    table.add_column("cost / 1k req", justify="right")
    table.add_column("gate")
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for row in results_rows(doc):
        by_model.setdefault(row["model_name"], {})[row["eval_type"]] = row
    for nim in doc.nims:
        cells = by_model.get(nim.model_name, {})
        rendered = [
            Text(_cell_text(cells[t]), style="yellow" if cells[t]["note"] else "") if t in cells else Text("—")
            for t in eval_types
        ]
        verdict = candidate_verdict(nim) or next((r["gate"] for r in cells.values() if r["gate"]), None)
        gate = Text(verdict or "—", style=VERDICT_STYLES.get(verdict or "", ""))
        table.add_row(nim.model_name, *rendered, fmt_cost(nim.cost_per_1k_requests), gate)
    captions = []
    if doc.gate and doc.gate.get("recommendation_reason"):
        captions.append(f"gate: {doc.gate['recommendation_reason']}")
    if doc.error:
        captions.append(f"run error: {doc.error}")
    if captions:
        table.caption = "\n".join(captions)
    return table


def gate_table(doc: JobDocument) -> Table:
    """The gate's verdict per configuration with the numbers behind it and the one-sentence reason."""
    gate = doc.gate or {}
    floor = gate.get("threshold")
    title = (f"Promotion gate on {gate.get('metric', '?')}: floor {floor:.3f} at {gate.get('confidence', 0):.0%}"
             if floor is not None else "Promotion gate")
    table = Table(title=title, show_lines=True)
    for column in ("configuration", "verdict", "agreement [CI]", "n", "records needed", "cost / 1k req", "p95", "why"):
        table.add_column(column, justify="right" if column in NUMERIC_GATE_COLUMNS else "left")
    for v in gate.get("verdicts", []):
        needed = v.get("records_needed")
        table.add_row(f"{v['model_name']} / {v['eval_type']}",
                      Text(v["verdict"], style=VERDICT_STYLES.get(v["verdict"], "")),
                      fmt_score_ci(v.get("agreement"), v.get("interval")), str(v.get("n", "—")),
                      f"{needed:,}" if needed is not None else "—", fmt_cost(v.get("cost_per_1k_requests")),
                      fmt_ms(v.get("latency_p95_ms")), v.get("reason", ""))
    table.caption = gate.get("recommendation_reason")
    return table


# ---------------------------------------------------------------------------------------------- plot


def plot_png(doc: JobDocument) -> bytes:
    """Accuracy vs latency p50 per candidate and eval type; marker area grows with cost per 1k requests."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    points = [r for r in results_rows(doc) if r[ACCURACY] is not None and r["latency_p50_ms"] is not None]
    markers = {EvalType.base: "o", EvalType.icl: "s", EvalType.customized: "^"}
    costs = [r["cost_per_1k_requests"] for r in points if r["cost_per_1k_requests"]]
    top_cost = max(costs) if costs else 0.0
    models = list(dict.fromkeys(r["model_name"] for r in points))
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=100)
    try:
        for r in points:
            cost = r["cost_per_1k_requests"] or 0.0
            size = 60 + (340 * cost / top_cost if top_cost else 0)
            ax.scatter(r["latency_p50_ms"], r[ACCURACY], s=size, marker=markers.get(r["eval_type"], "D"),
                       color=colors(models.index(r["model_name"]) % 10), alpha=0.75, edgecolors="black")
            ci = r[f"{ACCURACY}_ci"]
            if ci and len(ci) == 2:
                ax.vlines(r["latency_p50_ms"], ci[0], ci[1], color=colors(models.index(r["model_name"]) % 10),
                          alpha=0.5)
        for i, model in enumerate(models):
            ax.scatter([], [], color=colors(i % 10), label=model)
        for eval_type, marker in markers.items():
            ax.scatter([], [], color="grey", marker=marker, label=eval_type)
        if not points:
            ax.text(0.5, 0.5, "no scored evaluations yet", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=8, loc="best")
        ax.set_xlabel("latency p50 (ms)")
        ax.set_ylabel(ACCURACY)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title("accuracy vs latency (marker size ~ cost per 1k requests)", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------- page


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, f"{name}.")
        else:
            plain = isinstance(value, (int, float, str, bool)) or value is None
            out.append((name, value if plain else json.dumps(value)))
    return out


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=select_autoescape(["html", "jinja"]))
    env.filters.update(score=fmt_score, score_ci=fmt_score_ci, ms=fmt_ms, cost=fmt_cost)
    return env


def render_html(doc: JobDocument) -> str:
    rows = results_rows(doc)
    return _environment().get_template(REPORT_TEMPLATE).render(
        doc=doc,
        rows=rows,
        accuracy=ACCURACY,
        datasets=doc.datasets,
        curation=_flatten(doc.curation),
        review=_flatten(doc.review or {}),
        gate=doc.gate,
        plot_base64=base64.b64encode(plot_png(doc)).decode("ascii"),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


def write_report(doc: JobDocument, out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` (self-contained) and ``out_dir/job.json``; return the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "job.json").write_text(doc.model_dump_json(indent=2), encoding="utf-8")
    page = out_dir / "report.html"
    tmp = page.with_suffix(".html.tmp")
    tmp.write_text(render_html(doc), encoding="utf-8")
    tmp.replace(page)  # atomic: a reader never sees half a page (activity retries rewrite it)
    return page


def publish_report(doc: JobDocument, store: ArtifactStore, scratch_dir: Path) -> str:
    """Render the report on this host, store ``reports/<job id>/{report.html,job.json}`` in the artifact
    store (readable from every host) and return the page's URI."""
    page = write_report(doc, Path(scratch_dir) / "reports" / doc.id)
    store.put(f"reports/{doc.id}/job.json", page.with_name("job.json"))
    return store.put(f"reports/{doc.id}/report.html", page).uri
